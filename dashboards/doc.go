// Package dashboards defines the SyncGuard Grafana dashboards as code.
//
// The Go definitions are the source. The JSON files next to this package
// (one per dashboard, named <uid>.json) are generated from them and
// committed, because Grafana's file provider reads them from disk:
// docker-compose.yml mounts this folder at /var/lib/grafana/dashboards and
// provisioning/ at /etc/grafana/provisioning. Regenerate the files with
//
//	go test ./dashboards -run TestDashboardFilesUpToDate -update
//
// The ClickHouse panels query the tables that schemas/migrations create,
// without a database prefix, so they run in the data source's default
// database (syncguard). Their SQL runs on ClickHouse 18.16 and on current
// releases, and uses only macros that grafana-clickhouse-datasource v4
// expands: $__timeFilter(column), $__fromTime, $__toTime and $__interval_s.
package dashboards
