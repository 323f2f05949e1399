package main

import (
	"context"
	"io"

	"github.com/tandem-gitops/tandem/render"
)

// renderWorkerCmd is the hidden subcommand "render-worker": one render in
// this process, requested on stdin, answered on stdout (render.ServeWorker).
// The agent starts it through render.NewWorkerPool with
// Command: [os.Executable(), "render-worker"]; it is not for people.
func renderWorkerCmd(ctx context.Context, stdin io.Reader, stdout io.Writer) error {
	return render.ServeWorker(ctx, stdin, stdout)
}
