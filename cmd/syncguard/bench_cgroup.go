package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// cgroupCPURoot is the mount point of the cgroup v1 cpu controller on the
// development machines.
const cgroupCPURoot = "/sys/fs/cgroup/cpu"

// cpuQuota is a cgroup that limits the processes in it to a share of one
// CPU, for the flood benchmark's load generator.
type cpuQuota struct{ dir string }

// cfsPeriod is the scheduler period that the quota is a share of.
const cfsPeriod = 100 * time.Millisecond

// newCPUQuota creates a cgroup under the cpu controller whose processes
// together get at most share of one CPU, such as 0.5. It needs root and
// the cgroup v1 cpu controller.
func newCPUQuota(name string, share float64) (*cpuQuota, error) {
	if _, err := os.Stat(filepath.Join(cgroupCPURoot, "cpu.cfs_quota_us")); err != nil {
		return nil, fmt.Errorf("--flood-cpu-quota needs the cgroup v1 cpu controller at %s: %w", cgroupCPURoot, err)
	}
	dir := filepath.Join(cgroupCPURoot, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("--flood-cpu-quota: create cgroup: %w", err)
	}
	q := &cpuQuota{dir: dir}
	period := cfsPeriod.Microseconds()
	quota := int64(share * float64(period))
	if err := q.write("cpu.cfs_period_us", period); err != nil {
		q.remove()
		return nil, err
	}
	if err := q.write("cpu.cfs_quota_us", quota); err != nil {
		q.remove()
		return nil, err
	}
	return q, nil
}

func (q *cpuQuota) write(file string, v int64) error {
	if err := os.WriteFile(filepath.Join(q.dir, file), []byte(strconv.FormatInt(v, 10)), 0o644); err != nil {
		return fmt.Errorf("--flood-cpu-quota: write %s: %w", file, err)
	}
	return nil
}

// add moves the process pid, with all its threads, into the cgroup.
func (q *cpuQuota) add(pid int) error { return q.write("cgroup.procs", int64(pid)) }

// remove deletes the cgroup; it must have no processes left.
func (q *cpuQuota) remove() {
	if err := os.Remove(q.dir); err != nil {
		say("could not remove cgroup %s: %v", q.dir, err)
	}
}
