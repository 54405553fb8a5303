package main

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTick is USER_HZ, the unit of utime and stime in /proc/PID/stat; it
// is 100 on every Linux this runs on.
const clockTick = 100

// procCPU is the user+system CPU a process has used, from /proc/PID/stat.
func procCPU(pid int) (time.Duration, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	s := string(b)
	// The command name may hold spaces; fields resume after its ')'.
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / clockTick, true
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuMeter measures the CPU a system uses over a window: the harness
// process when the system runs in it, plus the system's server processes.
type cpuMeter struct {
	sys   System
	self  time.Duration
	procs map[int]time.Duration
}

func startCPU(s System) *cpuMeter {
	m := &cpuMeter{sys: s, procs: map[int]time.Duration{}}
	if s.SelfCPU() {
		m.self = selfCPU()
	}
	for _, pid := range s.PIDs() {
		if c, ok := procCPU(pid); ok {
			m.procs[pid] = c
		}
	}
	return m
}

// used is the CPU time used since startCPU; a process that appeared since
// counts from zero.
func (m *cpuMeter) used() time.Duration {
	var d time.Duration
	if m.sys.SelfCPU() {
		d += selfCPU() - m.self
	}
	for _, pid := range m.sys.PIDs() {
		if c, ok := procCPU(pid); ok {
			d += c - m.procs[pid]
		}
	}
	return d
}

// rssBytes is a process's resident set (VmRSS) and its peak (VmHWM).
func rssBytes(pid int) (rss, hwm int64) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb << 10
		case "VmHWM:":
			hwm = kb << 10
		}
	}
	return rss, hwm
}
