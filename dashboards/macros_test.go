package dashboards

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// testInterval stands for Grafana's $__interval in the tests. Grafana
// raises it to the panel's minimum interval, and every bucketed panel sets
// "1m", so a range of a few hours yields exactly one minute.
const testInterval = time.Minute

// A fixed range for tests that only expand macros.
var (
	testFrom = time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	testTo   = time.Date(2025, 3, 1, 16, 0, 0, 0, time.UTC)
)

// macroPattern matches a macro name and its optional argument list. The
// arguments of the macros that the dashboards use never contain
// parentheses.
var macroPattern = regexp.MustCompile(`\$__([A-Za-z_]+)(\(([^()]*)\))?`)

// expandMacros expands the grafana-clickhouse-datasource v4 macros in sql
// the way the plugin's backend does (pkg/macros/macros.go of
// github.com/grafana/clickhouse-datasource), for the range [from, to] and
// testInterval. Only the macros that the dashboards may use are known, and
// any other macro is an error. So a panel cannot depend on a macro that the
// plugin lacks, or on one whose expansion ClickHouse 18.16 cannot run, such
// as $__timeInterval, which expands to toStartOfInterval.
func expandMacros(sql string, from, to time.Time) (string, error) {
	var expandErr error
	out := macroPattern.ReplaceAllStringFunc(sql, func(m string) string {
		parts := macroPattern.FindStringSubmatch(m)
		name, hasArgs, args := parts[1], parts[2] != "", parts[3]
		var (
			s   string
			err error
		)
		switch name {
		case "timeFilter":
			column := strings.TrimSpace(args)
			if !hasArgs || column == "" || strings.Contains(column, ",") {
				err = fmt.Errorf("$__timeFilter takes one column, got %q", m)
				break
			}
			s = fmt.Sprintf("%s >= toDateTime(%d) AND %s <= toDateTime(%d)", column, from.Unix(), column, to.Unix())
		case "fromTime":
			s = fmt.Sprintf("toDateTime(%d)", from.Unix())
		case "toTime":
			s = fmt.Sprintf("toDateTime(%d)", to.Unix())
		case "interval_s":
			s = strconv.Itoa(max(int(testInterval.Seconds()), 1))
		default:
			err = fmt.Errorf("macro $__%s is not one the dashboards may use", name)
		}
		if err != nil && expandErr == nil {
			expandErr = err
		}
		if hasArgs && name != "timeFilter" && expandErr == nil {
			// $__fromTime(x) would leave "(x)" behind in the plugin.
			expandErr = fmt.Errorf("macro $__%s takes no arguments, got %q", name, m)
		}
		return s
	})
	if expandErr != nil {
		return "", expandErr
	}
	if strings.Contains(out, "$") {
		return "", fmt.Errorf("unexpanded variable left in %q", out)
	}
	return out, nil
}

func TestExpandMacros(t *testing.T) {
	from := time.Unix(1415792726, 0)
	to := time.Unix(1447328726, 0)
	tests := []struct {
		name string
		sql  string
		want string
	}{
		{
			"time filter",
			"SELECT 1 FROM t WHERE $__timeFilter(time) AND x = 1",
			"SELECT 1 FROM t WHERE time >= toDateTime(1415792726) AND time <= toDateTime(1447328726) AND x = 1",
		},
		{
			"time filter with spaces",
			"WHERE $__timeFilter( inserted_at )",
			"WHERE inserted_at >= toDateTime(1415792726) AND inserted_at <= toDateTime(1447328726)",
		},
		{
			"from and to",
			"WHERE t BETWEEN $__fromTime AND $__toTime",
			"WHERE t BETWEEN toDateTime(1415792726) AND toDateTime(1447328726)",
		},
		{
			"interval",
			"intDiv(toUInt32(t), $__interval_s) * $__interval_s",
			"intDiv(toUInt32(t), 60) * 60",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := expandMacros(tt.sql, from, to)
			if err != nil {
				t.Fatalf("expandMacros(%q): %v", tt.sql, err)
			}
			if got != tt.want {
				t.Errorf("expandMacros(%q) = %q, want %q", tt.sql, got, tt.want)
			}
		})
	}
}

func TestExpandMacrosRejects(t *testing.T) {
	for _, sql := range []string{
		"SELECT $__timeInterval(time)",
		"SELECT 1 WHERE $__timeFilter_ms(time)",
		"SELECT 1 WHERE $__timeFilter(a, b)",
		"SELECT 1 WHERE $__timeFilter",
		"SELECT $__fromTime(x)",
		"SELECT $dashboard_variable",
	} {
		if got, err := expandMacros(sql, testFrom, testTo); err == nil {
			t.Errorf("expandMacros(%q) = %q, want an error", sql, got)
		}
	}
}
