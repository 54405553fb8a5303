package server

// ConnConfig: see Config.Conns. Issue 14 fills it in.
type ConnConfig struct{}
