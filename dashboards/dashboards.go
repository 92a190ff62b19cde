package dashboards

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// All returns every SyncGuard dashboard.
func All() []Dashboard {
	return []Dashboard{Overview(), Operations()}
}

// FileName returns the name of d's JSON file, which is its uid with the
// extension .json.
func (d Dashboard) FileName() string { return d.UID + ".json" }

// JSON encodes d the way the committed files store it: indented by two
// spaces, with a final newline.
func (d Dashboard) JSON() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(d); err != nil {
		return nil, fmt.Errorf("encode dashboard %s: %w", d.UID, err)
	}
	return buf.Bytes(), nil
}

// WriteFiles writes every dashboard into dir as <uid>.json, replacing the
// files that exist.
func WriteFiles(dir string) error {
	for _, d := range All() {
		b, err := d.JSON()
		if err != nil {
			return err
		}
		path := filepath.Join(dir, d.FileName())
		if err := os.WriteFile(path, b, 0o644); err != nil {
			return fmt.Errorf("write dashboard %s: %w", path, err)
		}
	}
	return nil
}

// PanelQuery is the raw SQL of one ClickHouse panel, with the plugin's
// macros ($__timeFilter and the others) not yet expanded.
type PanelQuery struct {
	Dashboard string // uid of the dashboard
	Panel     string // title of the panel
	RawSQL    string
}

// Queries returns the SQL of every ClickHouse panel of every dashboard, in
// dashboard and panel order.
func Queries() []PanelQuery {
	var out []PanelQuery
	for _, d := range All() {
		for _, p := range d.Panels {
			for _, t := range p.Targets {
				if t.Datasource.Type != ClickHouseType {
					continue
				}
				out = append(out, PanelQuery{Dashboard: d.UID, Panel: p.Title, RawSQL: t.RawSQL})
			}
		}
	}
	return out
}
