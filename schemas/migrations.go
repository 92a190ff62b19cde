package schemas

import (
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

// DatabasePlaceholder stands for the ClickHouse database name in migration
// statements. The migration runner replaces it before it runs a statement.
const DatabasePlaceholder = "{db}"

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migration is one numbered ClickHouse migration file,
// migrations/<version>_<name>.sql.
type Migration struct {
	Version uint32
	Name    string // file name without the version and the extension
	// Statements are the SQL statements in file order, without the final
	// semicolon and still containing DatabasePlaceholder.
	Statements []string
}

// MigrationFS returns the embedded migration files, under "migrations/".
func MigrationFS() fs.FS { return migrationFiles }

// Migrations parses every embedded migration file and returns them in
// version order. It fails on a file name without a version, on two files
// with the same version and on a file without statements.
func Migrations() ([]Migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, fmt.Errorf("read embedded migrations: %w", err)
	}

	var out []Migration
	seen := make(map[uint32]string)
	for _, e := range entries {
		if e.IsDir() || path.Ext(e.Name()) != ".sql" {
			continue
		}
		m, err := parseMigrationName(e.Name())
		if err != nil {
			return nil, err
		}
		if other, dup := seen[m.Version]; dup {
			return nil, fmt.Errorf("migrations %s and %s share version %d", other, e.Name(), m.Version)
		}
		seen[m.Version] = e.Name()

		b, err := fs.ReadFile(migrationFiles, "migrations/"+e.Name())
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", e.Name(), err)
		}
		m.Statements = SplitStatements(string(b))
		if len(m.Statements) == 0 {
			return nil, fmt.Errorf("migration %s contains no statements", e.Name())
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}

func parseMigrationName(file string) (Migration, error) {
	base := strings.TrimSuffix(file, ".sql")
	num, name, ok := strings.Cut(base, "_")
	if !ok || name == "" {
		return Migration{}, fmt.Errorf("migration file %s: name must be <version>_<name>.sql", file)
	}
	v, err := strconv.ParseUint(num, 10, 32)
	if err != nil || v == 0 {
		return Migration{}, fmt.Errorf("migration file %s: version %q is not a positive integer", file, num)
	}
	return Migration{Version: uint32(v), Name: name}, nil
}

// SplitStatements splits a migration file into statements. Lines that start
// with "--" are comments and are dropped, and a line ending with a semicolon
// ends a statement. A semicolon inside a string literal at the end of a line
// would therefore split the statement, so migrations avoid that.
func SplitStatements(sql string) []string {
	var (
		out []string
		cur strings.Builder
	)
	for line := range strings.Lines(sql) {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "--") {
			continue
		}
		cur.WriteString(line)
		if strings.HasSuffix(trimmed, ";") {
			if stmt := strings.TrimSuffix(strings.TrimSpace(cur.String()), ";"); stmt != "" {
				out = append(out, stmt)
			}
			cur.Reset()
		}
	}
	if stmt := strings.TrimSpace(cur.String()); stmt != "" {
		out = append(out, stmt)
	}
	return out
}
