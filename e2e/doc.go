// Package e2e holds end-to-end tests: they build the syncguard binary, run
// it as a separate process against the real Kafka and ClickHouse that
// scripts/services.sh starts, and check what a user would see: HTTP
// responses, ClickHouse rows and Kafka records.
package e2e
