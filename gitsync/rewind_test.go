package gitsync

import (
	"context"
	"errors"
	"testing"
)

// TestPollReportsRewind: a branch force-pushed to a commit that does not
// descend from the last tip Poll returned is reported as rewound, naming
// the old tip; a fast-forward and a later poll of the same tip are not.
// A Write edit sees a commit dropped by the rewind as off the branch.
func TestPollReportsRewind(t *testing.T) {
	ctx := context.Background()
	rem, c1 := newRemote(t)
	if _, err := rem.Git("config", "receive.denyNonFastForwards", "false"); err != nil {
		t.Fatal(err)
	}
	r := open(t, rem.Path)
	poll := func() Poll {
		t.Helper()
		p, err := r.Poll(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	if p := poll(); p.Rewound || p.Previous != "" {
		t.Fatalf("first poll = %+v, want no previous tip", p)
	}
	c2, err := rem.Commit(map[string]string{"bundles/shop/app/a.yaml": "a: 2\n"}, "a 2")
	if err != nil {
		t.Fatal(err)
	}
	if p := poll(); p.Tip != c2 || p.Previous != c1 || p.Rewound {
		t.Fatalf("fast-forward poll = %+v, want tip %s from %s, not rewound", p, c2, c1)
	}
	// Someone resets the branch to c1 and pushes another commit on it.
	if _, err := rem.Git("update-ref", "refs/heads/main", c1); err != nil {
		t.Fatal(err)
	}
	if p := poll(); p.Tip != c1 || p.Previous != c2 || !p.Rewound || p.Fetched {
		t.Fatalf("poll after a reset to %s = %+v, want rewound from %s without a fetch", c1, p, c2)
	}
	c3, err := rem.Commit(map[string]string{"bundles/shop/app/a.yaml": "a: 3\n"}, "a 3")
	if err != nil {
		t.Fatal(err)
	}
	if p := poll(); p.Tip != c3 || p.Previous != c1 || p.Rewound {
		t.Fatalf("poll after a commit on the rewound branch = %+v, want a fast-forward", p)
	}
	if p := poll(); p.Previous != "" || p.Rewound {
		t.Fatalf("unchanged poll = %+v, want nothing to report", p)
	}
	// A force push replacing c3 by a sibling.
	if _, err := rem.Git("update-ref", "refs/heads/main", c1); err != nil {
		t.Fatal(err)
	}
	c4, err := rem.Commit(map[string]string{"bundles/shop/app/a.yaml": "a: 4\n"}, "a 4")
	if err != nil {
		t.Fatal(err)
	}
	if p := poll(); p.Tip != c4 || p.Previous != c3 || !p.Rewound || !p.Fetched {
		t.Fatalf("poll after a force push = %+v, want rewound from %s", p, c3)
	}

	_, err = r.Write(ctx, func(ctx context.Context, tr *Tree) (string, error) {
		for c, want := range map[string]bool{c1: true, c4: true, c2: false, c3: false} {
			if on, err := tr.OnBranch(c); err != nil || on != want {
				t.Errorf("OnBranch(%s) = %v, %v; want %v", c, on, err, want)
			}
		}
		if _, err := tr.OnBranch(c1[:7]); err == nil {
			t.Errorf("OnBranch of a short hash: no error")
		}
		return "", ErrAbandon
	})
	if !errors.Is(err, ErrAbandon) {
		t.Fatal(err)
	}
}
