//go:build tools

// Package tools pins Toxiproxy (github.com/Shopify/toxiproxy/v2) as a module dependency so that
// build.sh can build its server command (cmd/server) from the module cache, by go.sum's hashes.
package tools

import (
	_ "github.com/Shopify/toxiproxy/v2/cmd/server"
)
