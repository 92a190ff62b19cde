package ingest

import (
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestOpenAPIListsProblemCodes checks that schemas/openapi.yaml lists every
// problem code that ingest responds with, each with its status in the
// description table.
func TestOpenAPIListsProblemCodes(t *testing.T) {
	b, err := os.ReadFile("../schemas/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Info struct {
			Description string `yaml:"description"`
		} `yaml:"info"`
		Components struct {
			Schemas struct {
				ProblemCode struct {
					Enum []string `yaml:"enum"`
				} `yaml:"ProblemCode"`
			} `yaml:"schemas"`
		} `yaml:"components"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	enum := doc.Components.Schemas.ProblemCode.Enum
	for code, p := range problems {
		if !slices.Contains(enum, code) {
			t.Errorf("ProblemCode enum lacks %s", code)
		}
		row := "| `" + code + "` | " + strconv.Itoa(p.status) + " |"
		if !strings.Contains(doc.Info.Description, row) {
			t.Errorf("the code table lacks the row %q", row)
		}
	}
	if len(enum) != len(problems) {
		t.Errorf("ProblemCode enum has %d codes, ingest responds with %d", len(enum), len(problems))
	}
}
