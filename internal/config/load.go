package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// EnvPrefix starts every environment variable that overrides a config key.
// The variable for a key is the prefix followed by the key path in upper
// case joined with "_": ingest.listen_addr is SYNCGUARD_INGEST_LISTEN_ADDR.
const EnvPrefix = "SYNCGUARD_"

// LoadFile decodes the YAML file at path into cfg, rejecting unknown keys,
// and then applies environment overrides. An empty path applies only the
// overrides. cfg must be a pointer to a struct already holding defaults.
func LoadFile(path string, cfg any) error {
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("read config: %w", err)
		}
		if err := Decode(b, cfg); err != nil {
			return fmt.Errorf("config %s: %w", path, err)
		}
	}
	return ApplyEnv(cfg, os.LookupEnv)
}

// unknownField matches the YAML decoder's message for a key that the
// struct lacks, which names a Go type that means nothing to an operator.
var unknownField = regexp.MustCompile(`field (\S+) not found in type \S+`)

// badValue matches the YAML decoder's message for a value of the wrong
// type, such as `cannot unmarshal !!str `+"`three`"+` into int32`.
var badValue = regexp.MustCompile("cannot unmarshal !!\\w+ `(.*)` into (\\S+)")

// errorLine matches the line number that starts each decoder message.
var errorLine = regexp.MustCompile(`line (\d+): `)

// expected names the values a Go type accepts, for error messages.
var expected = map[string]string{
	"int": "an integer", "int32": "an integer", "int64": "an integer",
	"float64": "a number", "bool": "true or false",
	"time.Duration": "a duration such as 500ms, 5m or 1h30m",
	"time.Time":     "a time such as 2026-01-31T00:00:00Z",
}

// Decode decodes YAML into cfg and rejects keys that cfg does not have.
// Each error names the key path, such as ingest.produce_timeout, with its
// line.
func Decode(b []byte, cfg any) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	// An empty document leaves the defaults as they are.
	err := dec.Decode(cfg)
	if err == nil || errors.Is(err, io.EOF) {
		return nil
	}
	var typeErr *yaml.TypeError
	if !errors.As(err, &typeErr) {
		return err
	}
	paths := keyPaths(b)
	msgs := make([]string, 0, len(typeErr.Errors))
	for _, m := range typeErr.Errors {
		msgs = append(msgs, describe(m, paths))
	}
	return errors.New(strings.Join(msgs, "; "))
}

// describe rewrites one decoder message as "KEY (line N): what is wrong".
func describe(msg string, paths map[int]string) string {
	prefix := ""
	if m := errorLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		msg = strings.TrimPrefix(msg, m[0])
		prefix = "line " + m[1] + ": "
		if path := paths[line]; path != "" {
			prefix = path + " (line " + m[1] + "): "
		}
	}
	if m := unknownField.FindStringSubmatch(msg); m != nil {
		return prefix + `unknown key "` + m[1] + `"`
	}
	if m := badValue.FindStringSubmatch(msg); m != nil {
		want := expected[m[2]]
		if want == "" {
			want = "a value of type " + m[2]
		}
		return prefix + fmt.Sprintf("invalid value %q, want %s", m[1], want)
	}
	return prefix + msg
}

// keyPaths maps each line of a YAML document to the dotted path of the
// first key or value on it, such as whatsapp.apps[0].name. It returns nil
// for a document that does not parse.
func keyPaths(b []byte) map[int]string {
	var root yaml.Node
	if yaml.Unmarshal(b, &root) != nil {
		return nil
	}
	paths := make(map[int]string)
	note := func(line int, path string) {
		if _, ok := paths[line]; !ok && path != "" {
			paths[line] = path
		}
	}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				key, value := n.Content[i], n.Content[i+1]
				child := key.Value
				if path != "" {
					child = path + "." + key.Value
				}
				note(key.Line, child)
				walk(value, child)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				walk(c, fmt.Sprintf("%s[%d]", path, i))
			}
		case yaml.ScalarNode, yaml.AliasNode:
			note(n.Line, path)
		}
	}
	walk(&root, "")
	return paths
}

// ApplyEnv walks cfg by its yaml tags and sets every field whose variable
// lookup finds. Strings, Secrets, bools, integers, floats, durations and
// comma-separated string lists are supported.
func ApplyEnv(cfg any, lookup func(string) (string, bool)) error {
	v := reflect.ValueOf(cfg)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return errors.New("BUG: ApplyEnv needs a pointer to a struct")
	}
	return applyEnv(v.Elem(), strings.TrimSuffix(EnvPrefix, "_"), lookup)
}

var durationType = reflect.TypeOf(time.Duration(0))

func applyEnv(v reflect.Value, prefix string, lookup func(string) (string, bool)) error {
	t := v.Type()
	for i := range t.NumField() {
		field := t.Field(i)
		if !field.IsExported() {
			continue
		}
		tag := strings.Split(field.Tag.Get("yaml"), ",")[0]
		if tag == "-" {
			continue
		}
		if tag == "" {
			tag = strings.ToLower(field.Name)
		}
		name := prefix + "_" + strings.ToUpper(tag)
		fv := v.Field(i)
		if fv.Kind() == reflect.Struct && fv.Type() != durationType {
			if err := applyEnv(fv, name, lookup); err != nil {
				return err
			}
			continue
		}
		raw, ok := lookup(name)
		if !ok {
			continue
		}
		if err := setField(fv, raw); err != nil {
			return fmt.Errorf("environment variable %s: %w", name, err)
		}
	}
	return nil
}

func setField(fv reflect.Value, raw string) error {
	if fv.Type() == durationType {
		d, err := time.ParseDuration(raw)
		if err != nil {
			return fmt.Errorf("invalid duration %q", raw)
		}
		fv.SetInt(int64(d))
		return nil
	}
	switch fv.Kind() {
	case reflect.String:
		fv.SetString(raw)
	case reflect.Bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return fmt.Errorf("invalid boolean %q", raw)
		}
		fv.SetBool(b)
	case reflect.Int, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return fmt.Errorf("invalid integer %q", raw)
		}
		fv.SetInt(n)
	case reflect.Float64:
		f, err := strconv.ParseFloat(raw, 64)
		if err != nil {
			return fmt.Errorf("invalid number %q", raw)
		}
		fv.SetFloat(f)
	case reflect.Slice:
		if fv.Type().Elem().Kind() != reflect.String {
			return fmt.Errorf("lists of %s cannot be set from the environment", fv.Type().Elem())
		}
		var items []string
		for _, s := range strings.Split(raw, ",") {
			if s = strings.TrimSpace(s); s != "" {
				items = append(items, s)
			}
		}
		list := reflect.MakeSlice(fv.Type(), len(items), len(items))
		for i, s := range items {
			list.Index(i).SetString(s)
		}
		fv.Set(list)
	default:
		return fmt.Errorf("fields of kind %s cannot be set from the environment", fv.Kind())
	}
	return nil
}
