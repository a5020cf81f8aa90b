//go:build race

package monitoring_test

// raceEnabled: the test binary was built with -race, so the service is built with it too
// (its packages are then already compiled, and the service runs under the detector).
const raceEnabled = true
