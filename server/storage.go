package server

// StorageConfig: see Config.Storage. Issue 14 fills it in.
type StorageConfig struct{}
