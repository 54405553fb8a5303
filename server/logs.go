package server

// LogConfig: see Config.Logs. Issue 14 fills it in.
type LogConfig struct{}
