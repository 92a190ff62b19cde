package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"

	"github.com/syncguard/syncguard/internal/loadgen"
)

// runLoadProcess runs `syncguard loadgen` with args in a child process and
// returns the report it wrote to reportPath. wrap, when not empty, is a
// command line that the child runs under, such as nice -n 19. started, when
// not nil, gets the child's pid as soon as it runs; its error kills the
// child.
//
// The benchmarks send their load from a child so that the generator's
// garbage collector and scheduler do not pause the server under test, nor
// the server's the generator's clocks, as they do within one Go process.
func runLoadProcess(ctx context.Context, reportPath string, wrap, args []string, started func(pid int) error) (loadgen.Report, error) {
	exe, err := os.Executable()
	if err != nil {
		return loadgen.Report{}, fmt.Errorf("find the syncguard binary for the load process: %w", err)
	}
	_ = os.Remove(reportPath)
	argv := append(append(append([]string{}, wrap...), exe, "loadgen"), args...)
	argv = append(argv, "--report-json", reportPath)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	if err := cmd.Start(); err != nil {
		return loadgen.Report{}, fmt.Errorf("load process: %w", err)
	}
	if started != nil {
		if err := started(cmd.Process.Pid); err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return loadgen.Report{}, err
		}
	}
	if err := cmd.Wait(); err != nil {
		return loadgen.Report{}, fmt.Errorf("load process: %w: %s", err, lastLines(stderr.String(), 5))
	}
	return readReportJSON(reportPath)
}
