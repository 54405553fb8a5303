package api

// maxLoggedError bounds an error value in a log line (see
// arr.TruncateError).
const maxLoggedError = 512
