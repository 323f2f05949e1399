// Command bundleschema writes the JSON schema of bundle.yaml
// (render.BundleSchema) to a file: `go generate ./render` runs it to
// refresh docs/bundle.schema.json after the bundle.yaml types change.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/tandem-gitops/tandem/render"
)

func main() {
	out := flag.String("o", "", "file to write (default: standard output)")
	flag.Parse()
	data, err := render.BundleSchema()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bundleschema:", err)
		os.Exit(1)
	}
	if *out == "" {
		_, err = os.Stdout.Write(data)
	} else {
		err = os.WriteFile(*out, data, 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bundleschema:", err)
		os.Exit(1)
	}
}
