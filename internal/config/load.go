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

// Decode decodes YAML into cfg and rejects keys that cfg does not have.
func Decode(b []byte, cfg any) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	// An empty document leaves the defaults as they are.
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return errors.New(unknownField.ReplaceAllString(err.Error(), `unknown key "$1"`))
	}
	return nil
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
