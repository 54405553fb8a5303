package server

// AdmissionConfig: see Config.Admission. Issue 14 fills it in.
type AdmissionConfig struct{}
