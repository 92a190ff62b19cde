package dashboards

import "strings"

var (
	clickHouseSource = DatasourceRef{Type: ClickHouseType, UID: ClickHouseUID}
	prometheusSource = DatasourceRef{Type: PrometheusType, UID: PrometheusUID}
)

// Panel heights in grid rows.
const (
	chartHeight = 8
	tableHeight = 10
	statHeight  = 4
)

// sqlTarget returns a ClickHouse raw SQL query. The SQL is trimmed so that
// the Go source can indent it.
func sqlTarget(format int, sql string) Target {
	f := format
	queryType := "table"
	if format == formatTimeSeries {
		queryType = "timeseries"
	}
	return Target{
		RefID:      "A",
		Datasource: clickHouseSource,
		EditorType: "sql",
		Format:     &f,
		QueryType:  queryType,
		RawSQL:     dedent(sql),
	}
}

// promTarget returns a Prometheus range query.
func promTarget(expr, legend string) Target {
	return Target{Datasource: prometheusSource, Expr: expr, LegendFormat: legend, Range: true}
}

// newPanel builds a panel of type kind and width w (of 24 columns) with
// targets. It names the targets A, B, ... and takes the panel's data source
// from the first target.
func newPanel(kind string, w, h int, title, description, unit string, targets ...Target) Panel {
	if len(targets) == 0 {
		panic("BUG: panel " + title + " has no query")
	}
	for i := range targets {
		targets[i].RefID = string(rune('A' + i))
	}
	return Panel{
		Type:        kind,
		Title:       title,
		Description: description,
		Datasource:  targets[0].Datasource,
		GridPos:     GridPos{W: w, H: h},
		Targets:     targets,
		FieldConfig: FieldConfig{Defaults: FieldDefaults{Unit: unit}, Overrides: []any{}},
		Options:     map[string]any{},
	}
}

func timeSeriesPanel(w int, title, description, unit string, targets ...Target) Panel {
	p := newPanel("timeseries", w, chartHeight, title, description, unit, targets...)
	p.FieldConfig.Defaults.Custom = map[string]any{
		"drawStyle":   "line",
		"fillOpacity": 10,
		"lineWidth":   1,
		"showPoints":  "never",
		"spanNulls":   false,
	}
	p.Options = map[string]any{
		"legend":  map[string]any{"displayMode": "list", "placement": "bottom", "showLegend": true},
		"tooltip": map[string]any{"mode": "multi", "sort": "desc"},
	}
	return p
}

func tablePanel(w int, title, description string, targets ...Target) Panel {
	p := newPanel("table", w, tableHeight, title, description, "", targets...)
	p.Options = map[string]any{"showHeader": true, "cellHeight": "sm"}
	return p
}

// barGaugePanel shows one bar per result row, for tables of (name, value).
func barGaugePanel(w int, title, description, unit string, targets ...Target) Panel {
	p := newPanel("bargauge", w, chartHeight, title, description, unit, targets...)
	p.Options = map[string]any{
		"orientation":  "horizontal",
		"displayMode":  "gradient",
		"showUnfilled": true,
		"reduceOptions": map[string]any{
			"values": true,
			"calcs":  []string{},
			"fields": "",
		},
	}
	return p
}

// statPanel shows the last value of each series.
func statPanel(w int, title, description, unit string, targets ...Target) Panel {
	p := newPanel("stat", w, statHeight, title, description, unit, targets...)
	p.Options = map[string]any{
		"colorMode": "value",
		"graphMode": "area",
		"textMode":  "auto",
		"reduceOptions": map[string]any{
			"values": false,
			"calcs":  []string{"lastNotNull"},
			"fields": "",
		},
	}
	return p
}

// withThresholds colors values: green below warn, orange from warn, red
// from crit.
func withThresholds(p Panel, warn, crit float64) Panel {
	p.FieldConfig.Defaults.Thresholds = &Thresholds{
		Mode: "absolute",
		Steps: []ThresholdStep{
			{Color: "green"},
			{Color: "orange", Value: &warn},
			{Color: "red", Value: &crit},
		},
	}
	return p
}

// layout numbers the panels from 1 and places them left to right in rows
// of 24 columns. A panel that does not fit in the rest of a row starts the
// next one, below the tallest panel of the row.
func layout(panels []Panel) []Panel {
	x, y, rowHeight := 0, 0, 0
	for i := range panels {
		g := &panels[i].GridPos
		if x+g.W > 24 {
			x, y, rowHeight = 0, y+rowHeight, 0
		}
		g.X, g.Y = x, y
		x += g.W
		rowHeight = max(rowHeight, g.H)
		panels[i].ID = i + 1
	}
	return panels
}

// dedent removes the common leading tabs of a raw string literal's lines
// and its first and last blank lines.
func dedent(s string) string {
	lines := strings.Split(strings.Trim(s, "\n"), "\n")
	indent := -1
	for _, l := range lines {
		if strings.TrimSpace(l) == "" {
			continue
		}
		n := len(l) - len(strings.TrimLeft(l, "\t"))
		if indent < 0 || n < indent {
			indent = n
		}
	}
	for i, l := range lines {
		if len(l) >= indent && indent > 0 {
			lines[i] = l[indent:]
		}
	}
	return strings.TrimSpace(strings.Join(lines, "\n"))
}

// sqlList returns values as a ClickHouse list of string literals, such as
// 'a', 'b'. The values are constants of package schemas, which contain no
// quotes or backslashes.
func sqlList(values ...string) string {
	quoted := make([]string, len(values))
	for i, v := range values {
		if strings.ContainsAny(v, `'\`) {
			panic("BUG: SQL literal " + v + " contains a quote or backslash")
		}
		quoted[i] = "'" + v + "'"
	}
	return strings.Join(quoted, ", ")
}
