package dashboards

import (
	"bytes"
	"encoding/json"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/syncguard/syncguard/dashboards/metricnames"
	"github.com/syncguard/syncguard/sinks"
)

var update = flag.Bool("update", false, "rewrite the dashboard JSON files from the Go definitions")

// repoRoot is the repository root, seen from this package's folder.
const repoRoot = ".."

// grafanaDashboardsDir is where docker-compose.yml mounts this folder and
// where the file provider looks for dashboards.
const grafanaDashboardsDir = "/var/lib/grafana/dashboards"

func TestDashboardFilesUpToDate(t *testing.T) {
	if *update {
		if err := WriteFiles("."); err != nil {
			t.Fatal(err)
		}
	}
	want := make(map[string]bool)
	for _, d := range All() {
		want[d.FileName()] = true
		b, err := d.JSON()
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(d.FileName())
		if err != nil {
			t.Errorf("read %s: %v; run go test ./dashboards -run TestDashboardFilesUpToDate -update", d.FileName(), err)
			continue
		}
		if !bytes.Equal(got, b) {
			t.Errorf("%s differs from the Go definition of dashboard %s; run go test ./dashboards -run TestDashboardFilesUpToDate -update", d.FileName(), d.UID)
		}
	}

	// Grafana's file provider loads every .json file under the folder,
	// subfolders included, so a stray file would become a dashboard.
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && filepath.Ext(path) == ".json" && !want[path] {
			t.Errorf("%s is not a generated dashboard, but Grafana would load it from %s", path, grafanaDashboardsDir)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// provisionedDatasource is the part of a provisioned data source that the
// tests check.
type provisionedDatasource struct {
	Name     string         `yaml:"name"`
	UID      string         `yaml:"uid"`
	Type     string         `yaml:"type"`
	URL      string         `yaml:"url"`
	JSONData map[string]any `yaml:"jsonData"`
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
}

func provisionedDatasources(t *testing.T) map[string]provisionedDatasource {
	t.Helper()
	var file struct {
		APIVersion  int                     `yaml:"apiVersion"`
		Datasources []provisionedDatasource `yaml:"datasources"`
	}
	readYAML(t, filepath.Join("provisioning", "datasources", "datasources.yaml"), &file)
	if file.APIVersion != 1 {
		t.Errorf("datasources.yaml: apiVersion = %d, want 1", file.APIVersion)
	}
	out := make(map[string]provisionedDatasource)
	for _, ds := range file.Datasources {
		if _, dup := out[ds.UID]; dup {
			t.Errorf("datasources.yaml: uid %q appears twice", ds.UID)
		}
		out[ds.UID] = ds
	}
	return out
}

func TestDatasourceProvisioning(t *testing.T) {
	sources := provisionedDatasources(t)

	ch, ok := sources[ClickHouseUID]
	if !ok {
		t.Fatalf("datasources.yaml has no data source with uid %q", ClickHouseUID)
	}
	if ch.Type != ClickHouseType {
		t.Errorf("data source %s: type = %q, want %q", ClickHouseUID, ch.Type, ClickHouseType)
	}
	wantJSON := map[string]any{
		"host":            "clickhouse",
		"port":            9000,
		"protocol":        "native",
		"defaultDatabase": sinks.DefaultClickHouseConfig().Database,
		"username":        "default",
	}
	for key, want := range wantJSON {
		if got := ch.JSONData[key]; got != want {
			t.Errorf("data source %s: jsonData.%s = %v, want %v", ClickHouseUID, key, got, want)
		}
	}

	prom, ok := sources[PrometheusUID]
	if !ok {
		t.Fatalf("datasources.yaml has no data source with uid %q", PrometheusUID)
	}
	if prom.Type != PrometheusType {
		t.Errorf("data source %s: type = %q, want %q", PrometheusUID, prom.Type, PrometheusType)
	}
	if prom.URL != "http://prometheus:9090" {
		t.Errorf("data source %s: url = %q, want http://prometheus:9090", PrometheusUID, prom.URL)
	}
}

func TestDashboardProvisioning(t *testing.T) {
	var file struct {
		APIVersion int `yaml:"apiVersion"`
		Providers  []struct {
			Name    string `yaml:"name"`
			Type    string `yaml:"type"`
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML(t, filepath.Join("provisioning", "dashboards", "dashboards.yaml"), &file)
	if file.APIVersion != 1 {
		t.Errorf("dashboards.yaml: apiVersion = %d, want 1", file.APIVersion)
	}
	if len(file.Providers) != 1 {
		t.Fatalf("dashboards.yaml: %d providers, want 1", len(file.Providers))
	}
	p := file.Providers[0]
	if p.Type != "file" {
		t.Errorf("provider %s: type = %q, want file", p.Name, p.Type)
	}
	if p.Options.Path != grafanaDashboardsDir {
		t.Errorf("provider %s: options.path = %q, want %q", p.Name, p.Options.Path, grafanaDashboardsDir)
	}

	// docker-compose.yml must mount this folder where the provider reads.
	var compose struct {
		Services map[string]struct {
			Volumes []string `yaml:"volumes"`
		} `yaml:"services"`
	}
	readYAML(t, filepath.Join(repoRoot, "docker-compose.yml"), &compose)
	mounts := map[string]bool{}
	for _, v := range compose.Services["grafana"].Volumes {
		src, dst, _ := strings.Cut(strings.TrimSuffix(v, ":ro"), ":")
		mounts[filepath.Clean(src)+" -> "+dst] = true
	}
	for _, want := range []string{
		"dashboards -> " + grafanaDashboardsDir,
		"dashboards/provisioning -> /etc/grafana/provisioning",
	} {
		if !mounts[want] {
			t.Errorf("docker-compose.yml: service grafana does not mount %s; it mounts %v", want, compose.Services["grafana"].Volumes)
		}
	}
}

// jsonDashboard is a committed dashboard file, decoded independently of
// the Go types so that the test checks what Grafana reads.
type jsonDashboard struct {
	UID    string `json:"uid"`
	Title  string `json:"title"`
	Panels []struct {
		ID         int            `json:"id"`
		Type       string         `json:"type"`
		Title      string         `json:"title"`
		Datasource *DatasourceRef `json:"datasource"`
		GridPos    *GridPos       `json:"gridPos"`
		Targets    []struct {
			RefID      string         `json:"refId"`
			Datasource *DatasourceRef `json:"datasource"`
			RawSQL     string         `json:"rawSql"`
			Format     *int           `json:"format"`
			Expr       string         `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

func readDashboardFiles(t *testing.T) []jsonDashboard {
	t.Helper()
	var out []jsonDashboard
	for _, d := range All() {
		b, err := os.ReadFile(d.FileName())
		if err != nil {
			t.Fatal(err)
		}
		var jd jsonDashboard
		if err := json.Unmarshal(b, &jd); err != nil {
			t.Fatalf("parse %s: %v", d.FileName(), err)
		}
		out = append(out, jd)
	}
	return out
}

func TestDashboardFilesValid(t *testing.T) {
	sources := provisionedDatasources(t)
	registered, err := metricnames.Registered(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	series := metricnames.Series(registered)
	// up is written by Prometheus itself for every scrape target.
	series["up"] = true

	uids := map[string]bool{}
	for _, d := range readDashboardFiles(t) {
		if d.UID == "" || d.Title == "" {
			t.Errorf("dashboard %q: uid and title must be set", d.UID)
		}
		if uids[d.UID] {
			t.Errorf("dashboard uid %s appears twice", d.UID)
		}
		uids[d.UID] = true
		if len(d.Panels) == 0 {
			t.Errorf("dashboard %s has no panels", d.UID)
		}

		ids := map[int]string{}
		var boxes []GridPos
		for _, p := range d.Panels {
			where := d.UID + " panel " + p.Title
			if p.ID <= 0 {
				t.Errorf("%s: id = %d, want a positive id", where, p.ID)
			}
			if other, dup := ids[p.ID]; dup {
				t.Errorf("%s: id %d is also the id of panel %s", where, p.ID, other)
			}
			ids[p.ID] = p.Title

			if p.GridPos == nil || p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X < 0 || p.GridPos.Y < 0 || p.GridPos.X+p.GridPos.W > 24 {
				t.Errorf("%s: gridPos %+v is missing or outside the 24 columns", where, p.GridPos)
			} else {
				for _, b := range boxes {
					if overlap(b, *p.GridPos) {
						t.Errorf("%s: gridPos %+v overlaps %+v", where, *p.GridPos, b)
					}
				}
				boxes = append(boxes, *p.GridPos)
			}

			if p.Datasource == nil {
				t.Errorf("%s: no datasource", where)
				continue
			}
			ds, ok := sources[p.Datasource.UID]
			if !ok {
				t.Errorf("%s: datasource uid %q is not provisioned", where, p.Datasource.UID)
			} else if ds.Type != p.Datasource.Type {
				t.Errorf("%s: datasource type %q, but uid %q is provisioned as %q", where, p.Datasource.Type, p.Datasource.UID, ds.Type)
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s: no queries", where)
			}

			for _, tg := range p.Targets {
				if tg.Datasource == nil || *tg.Datasource != *p.Datasource {
					t.Errorf("%s: query %s uses datasource %+v, the panel %+v", where, tg.RefID, tg.Datasource, *p.Datasource)
				}
				switch p.Datasource.Type {
				case ClickHouseType:
					if strings.TrimSpace(tg.RawSQL) == "" {
						t.Errorf("%s: query %s has no rawSql", where, tg.RefID)
					}
					if tg.Format == nil || (*tg.Format != formatTimeSeries && *tg.Format != formatTable) {
						t.Errorf("%s: query %s has format %v, want %d or %d", where, tg.RefID, tg.Format, formatTimeSeries, formatTable)
					}
				case PrometheusType:
					names, err := metricnames.InExpr(tg.Expr)
					if err != nil {
						t.Errorf("%s: query %s: %v", where, tg.RefID, err)
						continue
					}
					if len(names) == 0 {
						t.Errorf("%s: query %s selects no metric: %s", where, tg.RefID, tg.Expr)
					}
					for _, n := range names {
						if !series[n] {
							t.Errorf("%s: query %s uses metric %s, which no Go code registers", where, tg.RefID, n)
						}
					}
				}
			}
		}
	}
}

func overlap(a, b GridPos) bool {
	return a.X < b.X+b.W && b.X < a.X+a.W && a.Y < b.Y+b.H && b.Y < a.Y+a.H
}

func TestQueriesCoverClickHousePanels(t *testing.T) {
	queries := Queries()
	var panels int
	for _, d := range All() {
		for _, p := range d.Panels {
			if p.Datasource.Type == ClickHouseType {
				panels++
			}
		}
	}
	if len(queries) != panels {
		t.Errorf("Queries returned %d queries for %d ClickHouse panels", len(queries), panels)
	}
	for _, q := range queries {
		if q.Dashboard != OverviewUID {
			t.Errorf("query of panel %s belongs to dashboard %s, want %s", q.Panel, q.Dashboard, OverviewUID)
		}
		if _, err := expandMacros(q.RawSQL, testFrom, testTo); err != nil {
			t.Errorf("panel %s: %v", q.Panel, err)
		}
	}
}

func TestLayout(t *testing.T) {
	panels := layout([]Panel{
		{GridPos: GridPos{W: 12, H: 8}},
		{GridPos: GridPos{W: 12, H: 10}},
		{GridPos: GridPos{W: 6, H: 4}},
		{GridPos: GridPos{W: 24, H: 8}},
	})
	want := []GridPos{
		{W: 12, H: 8, X: 0, Y: 0},
		{W: 12, H: 10, X: 12, Y: 0},
		{W: 6, H: 4, X: 0, Y: 10},
		{W: 24, H: 8, X: 0, Y: 14},
	}
	for i, p := range panels {
		if p.ID != i+1 {
			t.Errorf("panel %d: id = %d, want %d", i, p.ID, i+1)
		}
		if p.GridPos != want[i] {
			t.Errorf("panel %d: gridPos = %+v, want %+v", i, p.GridPos, want[i])
		}
	}
}

func TestDedent(t *testing.T) {
	got := dedent("\n\t\tSELECT a\n\t\tFROM t\n\t\t\tWHERE x\n\t")
	want := "SELECT a\nFROM t\n\tWHERE x"
	if got != want {
		t.Errorf("dedent = %q, want %q", got, want)
	}
}
