package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/syncguard/syncguard/internal/telemetry"
)

func runCommand(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	target := fs.String("target", targetAll, "components to run: all, or a comma-separated list of "+strings.Join(allTargets, ", "))
	configPath := fs.String("config", "", "YAML configuration file; SYNCGUARD_* environment variables override it")
	if err := fs.Parse(args); err != nil {
		return flagError(err)
	}
	targets, err := parseTargets(*target)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(*configPath)
	if err != nil {
		return err
	}
	if err := cfg.validate(targets); err != nil {
		if *configPath == "" {
			return invalidConfig(fmt.Errorf("%w (no --config was given, so only defaults and SYNCGUARD_* variables apply; pass --config FILE, for example deploy/syncguard.yaml)", err))
		}
		return invalidConfig(err)
	}

	logger := newLogger(cfg)
	if unknown := unknownEnv(os.Environ()); len(unknown) > 0 {
		logger.Warn("environment variables set no config key; check their spelling", "variables", unknown)
	}
	p, err := newPipeline(ctx, cfg, targets, logger)
	if err != nil {
		return err
	}
	logger.Info("syncguard starting", "targets", targets)
	if err := p.run(ctx); err != nil {
		return err
	}
	logger.Info("syncguard stopped")
	return nil
}

// newLogger returns the process logger. Logs go to standard error, so that
// standard output stays free for command results.
func newLogger(cfg Config) *slog.Logger {
	return telemetry.NewLogger(cfg.Telemetry, os.Stderr)
}
