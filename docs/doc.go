// Package docs holds the service's documentation pages and no code. Its tests keep the
// pages true: they run the examples of README.md and docs/*.md against binaries built
// from this checkout (see examples.md for the marking convention), and hold the
// configuration table to what creditsessionsd -h says.
package docs
