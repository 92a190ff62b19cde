// Package metricnames finds the Prometheus metric names that the SyncGuard
// source registers and the metric names that a PromQL expression selects,
// so that tests can prove dashboards and alert rules query real metrics.
package metricnames

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Kind is the type of a metric's collector, which decides the series names
// it exposes.
type Kind int

// Kinds of collectors, named after the client_golang option struct that
// declares them. Untyped is prometheus.Opts, which counters and gauges
// share.
const (
	Untyped Kind = iota
	Counter
	Gauge
	Histogram
	Summary
)

const clientGolang = "github.com/prometheus/client_golang/prometheus"

var optsKinds = map[string]Kind{
	"Opts":          Untyped,
	"CounterOpts":   Counter,
	"GaugeOpts":     Gauge,
	"HistogramOpts": Histogram,
	"SummaryOpts":   Summary,
}

// Registered parses the non-test Go files under root and returns the Name
// of every client_golang option literal (prometheus.CounterOpts and the
// others) with its kind. Folders named testdata or vendor, and those whose
// name starts with "." or "_", are skipped, as the go command skips them.
// A Name that is not a string literal is an error, because its value is
// unknown without type checking.
func Registered(root string) (map[string]Kind, error) {
	out := make(map[string]Kind)
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (name == "testdata" || name == "vendor" ||
				strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return fmt.Errorf("parse %s: %w", path, err)
		}
		return collect(fset, f, out)
	})
	if err != nil {
		return nil, fmt.Errorf("find registered metrics under %s: %w", root, err)
	}
	return out, nil
}

// collect adds the metric names of the option literals in f to out.
func collect(fset *token.FileSet, f *ast.File, out map[string]Kind) error {
	pkgName := importName(f, clientGolang)
	if pkgName == "" {
		return nil
	}
	var err error
	ast.Inspect(f, func(n ast.Node) bool {
		lit, ok := n.(*ast.CompositeLit)
		if !ok || err != nil {
			return err == nil
		}
		sel, ok := lit.Type.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		if x, ok := sel.X.(*ast.Ident); !ok || x.Name != pkgName {
			return true
		}
		kind, ok := optsKinds[sel.Sel.Name]
		if !ok {
			return true
		}
		for _, elt := range lit.Elts {
			kv, ok := elt.(*ast.KeyValueExpr)
			if !ok {
				continue
			}
			if key, ok := kv.Key.(*ast.Ident); !ok || key.Name != "Name" {
				continue
			}
			name, ok := stringLiteral(kv.Value)
			if !ok {
				err = fmt.Errorf("%s: metric name is not a string literal", fset.Position(kv.Value.Pos()))
				return false
			}
			out[name] = kind
		}
		return true
	})
	return err
}

// importName returns the name under which f imports path, or "" when f
// does not import it.
func importName(f *ast.File, path string) string {
	for _, imp := range f.Imports {
		p, err := strconv.Unquote(imp.Path.Value)
		if err != nil || p != path {
			continue
		}
		if imp.Name != nil {
			return imp.Name.Name
		}
		return filepath.Base(path)
	}
	return ""
}

func stringLiteral(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

// Series returns the names of the series that the registered metrics
// expose: the name itself, and for histograms and summaries also the
// _bucket (histograms only), _sum and _count series.
func Series(registered map[string]Kind) map[string]bool {
	out := make(map[string]bool, len(registered))
	for name, kind := range registered {
		switch kind {
		case Histogram:
			out[name+"_bucket"] = true
			out[name+"_sum"] = true
			out[name+"_count"] = true
		case Summary:
			out[name] = true
			out[name+"_sum"] = true
			out[name+"_count"] = true
		default:
			out[name] = true
		}
	}
	return out
}

// Words of PromQL that are not metric names. Grouping modifiers are
// followed by a label list in parentheses, which contains no metric name.
var (
	groupingModifiers = map[string]bool{
		"by": true, "without": true, "on": true, "ignoring": true,
		"group_left": true, "group_right": true,
	}
	keywords = map[string]bool{
		"and": true, "or": true, "unless": true, "bool": true, "offset": true,
		"atan2": true, "inf": true, "nan": true,
	}
)

// InExpr returns the metric names that a PromQL expression selects, sorted
// and without duplicates. It is a lexical scan, not a parser. It skips
// strings, label matchers in braces, ranges in brackets, numbers,
// durations and Grafana variables such as $__rate_interval. It also skips
// function and aggregation names (also in the form "sum by (label) (...)"),
// keywords and the label lists of grouping modifiers. Every other
// identifier is a metric name. Selectors without a name, such
// as {__name__=~"x.*"}, are not reported.
func InExpr(expr string) ([]string, error) {
	seen := make(map[string]bool)
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			end, err := skipString(expr, i)
			if err != nil {
				return nil, err
			}
			i = end
		case c == '{' || c == '[':
			end, err := skipBracket(expr, i)
			if err != nil {
				return nil, err
			}
			i = end
		case c == '#':
			for i < len(expr) && expr[i] != '\n' {
				i++
			}
		case isDigit(c) || (c == '.' && i+1 < len(expr) && isDigit(expr[i+1])):
			for i < len(expr) && (isIdentChar(expr[i]) || expr[i] == '.') {
				i++
			}
		case c == '$':
			i++
			for i < len(expr) && (isIdentChar(expr[i]) || expr[i] == '{' || expr[i] == '}') {
				i++
			}
		case isIdentStart(c):
			start := i
			for i < len(expr) && isIdentChar(expr[i]) {
				i++
			}
			word := expr[start:i]
			next := nextNonSpace(expr, i)
			switch {
			case groupingModifiers[strings.ToLower(word)]:
				if next < len(expr) && expr[next] == '(' {
					end, err := skipBracket(expr, next)
					if err != nil {
						return nil, err
					}
					i = end
				}
			case keywords[strings.ToLower(word)]:
			case next < len(expr) && expr[next] == '(':
				// A function or an aggregation.
			case isGroupingWord(expr, next):
				// An aggregation written as "sum by (label) (...)".
			default:
				seen[word] = true
			}
		default:
			i++
		}
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return names, nil
}

// skipString returns the index after the string literal that starts at i.
// Backquoted strings have no escapes.
func skipString(s string, i int) (int, error) {
	quote := s[i]
	for j := i + 1; j < len(s); j++ {
		switch {
		case s[j] == '\\' && quote != '`':
			j++
		case s[j] == quote:
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("unterminated string at offset %d in %q", i, s)
}

// skipBracket returns the index after the bracket that closes the one at i,
// skipping nested brackets and string literals.
func skipBracket(s string, i int) (int, error) {
	var stack []byte
	for j := i; j < len(s); j++ {
		switch c := s[j]; c {
		case '(', '[', '{':
			stack = append(stack, c)
		case ')', ']', '}':
			if len(stack) == 0 || stack[len(stack)-1] != opening(c) {
				return 0, fmt.Errorf("unbalanced %q at offset %d in %q", c, j, s)
			}
			stack = stack[:len(stack)-1]
			if len(stack) == 0 {
				return j + 1, nil
			}
		case '"', '\'', '`':
			end, err := skipString(s, j)
			if err != nil {
				return 0, err
			}
			j = end - 1
		}
	}
	return 0, fmt.Errorf("unclosed %q at offset %d in %q", s[i], i, s)
}

func opening(c byte) byte {
	switch c {
	case ')':
		return '('
	case ']':
		return '['
	}
	return '{'
}

// isGroupingWord reports whether the word at i is "by" or "without".
func isGroupingWord(s string, i int) bool {
	j := i
	for j < len(s) && isIdentChar(s[j]) {
		j++
	}
	w := strings.ToLower(s[i:j])
	return w == "by" || w == "without"
}

func nextNonSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
		i++
	}
	return i
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isIdentChar(c byte) bool { return isIdentStart(c) || isDigit(c) }
