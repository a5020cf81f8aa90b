//go:build !race

package monitoring_test

// raceEnabled: the test binary was built without -race.
const raceEnabled = false
