package dashboards

// The types below are the subset of the Grafana dashboard JSON model
// (schemaVersion 39) that the SyncGuard dashboards use.

// Data source types and the uids that provisioning/datasources gives them.
const (
	ClickHouseType = "grafana-clickhouse-datasource"
	ClickHouseUID  = "clickhouse"
	PrometheusType = "prometheus"
	PrometheusUID  = "prometheus"
)

// schemaVersion is the dashboard JSON schema version the files declare.
const schemaVersion = 39

// Dashboard is one Grafana dashboard.
type Dashboard struct {
	UID           string    `json:"uid"`
	Title         string    `json:"title"`
	Description   string    `json:"description,omitempty"`
	Tags          []string  `json:"tags"`
	Timezone      string    `json:"timezone"`
	Editable      bool      `json:"editable"`
	GraphTooltip  int       `json:"graphTooltip"`
	Refresh       string    `json:"refresh"`
	SchemaVersion int       `json:"schemaVersion"`
	Version       int       `json:"version"`
	Time          TimeRange `json:"time"`
	Templating    List      `json:"templating"`
	Annotations   List      `json:"annotations"`
	Panels        []Panel   `json:"panels"`
}

// TimeRange is the default time range of a dashboard, in Grafana's relative
// notation such as "now-6h".
type TimeRange struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// List is the wrapper Grafana uses for templating variables and annotations.
// The SyncGuard dashboards define none, so it is always empty.
type List struct {
	List []any `json:"list"`
}

// DatasourceRef names a provisioned data source by type and uid.
type DatasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// GridPos places a panel on the 24-column dashboard grid.
type GridPos struct {
	H int `json:"h"`
	W int `json:"w"`
	X int `json:"x"`
	Y int `json:"y"`
}

// Panel is one visualization with its queries.
type Panel struct {
	ID          int           `json:"id"`
	Type        string        `json:"type"`
	Title       string        `json:"title"`
	Description string        `json:"description,omitempty"`
	Datasource  DatasourceRef `json:"datasource"`
	GridPos     GridPos       `json:"gridPos"`
	// Interval is the minimum query interval, which bounds $__interval_s
	// from below.
	Interval string `json:"interval,omitempty"`
	// TimeFrom overrides the dashboard's time range with a relative one,
	// such as "1h" for the last hour.
	TimeFrom    string         `json:"timeFrom,omitempty"`
	Targets     []Target       `json:"targets"`
	FieldConfig FieldConfig    `json:"fieldConfig"`
	Options     map[string]any `json:"options"`
}

// Target is one query of a panel. ClickHouse targets set EditorType,
// Format, QueryType and RawSQL; Prometheus targets set Expr, LegendFormat
// and Range.
type Target struct {
	RefID      string        `json:"refId"`
	Datasource DatasourceRef `json:"datasource"`

	EditorType string `json:"editorType,omitempty"`
	// Format is the plugin's result format: formatTimeSeries or
	// formatTable. It is a pointer because 0 is a meaningful value.
	Format    *int   `json:"format,omitempty"`
	QueryType string `json:"queryType,omitempty"`
	RawSQL    string `json:"rawSql,omitempty"`

	Expr         string `json:"expr,omitempty"`
	LegendFormat string `json:"legendFormat,omitempty"`
	Range        bool   `json:"range,omitempty"`
}

// Result formats of grafana-clickhouse-datasource, the values of
// sqlutil.FormatQueryOption in grafana-plugin-sdk-go. A time series result
// in long form (time, label, value) is turned into one series per label.
const (
	formatTimeSeries = 0
	formatTable      = 1
)

// FieldConfig contains the display settings of a panel's fields.
type FieldConfig struct {
	Defaults  FieldDefaults `json:"defaults"`
	Overrides []any         `json:"overrides"`
}

// FieldDefaults are the display settings that apply to every field.
type FieldDefaults struct {
	// DisplayName names a series, for example "${__field.labels.outcome}"
	// to name it after the label of a long-form time series.
	DisplayName string         `json:"displayName,omitempty"`
	Unit        string         `json:"unit,omitempty"`
	Decimals    *int           `json:"decimals,omitempty"`
	Min         *float64       `json:"min,omitempty"`
	Max         *float64       `json:"max,omitempty"`
	Thresholds  *Thresholds    `json:"thresholds,omitempty"`
	Custom      map[string]any `json:"custom,omitempty"`
}

// Thresholds color a value by the highest step it reaches.
type Thresholds struct {
	Mode  string          `json:"mode"`
	Steps []ThresholdStep `json:"steps"`
}

// ThresholdStep is one color step. The first step has a nil Value, which
// Grafana reads as minus infinity.
type ThresholdStep struct {
	Color string   `json:"color"`
	Value *float64 `json:"value"`
}
