// Package prometheus holds no code. Its folder contains the Prometheus
// configuration and alerting rules that docker-compose.yml mounts at
// /etc/prometheus, and its tests check them with promtool.
package prometheus
