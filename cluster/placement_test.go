package cluster

import (
	"crypto/sha256"
	"fmt"
	"math"
	"testing"
)

func testID(i int) [32]byte { return sha256.Sum256(fmt.Appendf(nil, "object-%d", i)) }

// TestOwnerSpreadsAndMovesLittle: objects spread evenly over the nodes,
// and a node leaving or joining moves only the objects it loses or takes.
func TestOwnerSpreadsAndMovesLittle(t *testing.T) {
	const objects = 30000
	three := []string{"n1", "n2", "n3"}
	four := []string{"n1", "n2", "n3", "n4"}
	count := map[string]int{}
	movedOnLeave, movedOnJoin := 0, 0
	for i := range objects {
		id := testID(i)
		o3 := Owner(id, three)
		count[o3]++
		if o2 := Owner(id, []string{"n1", "n3"}); o2 != o3 && o3 != "n2" {
			movedOnLeave++ // an object of a node that stayed moved
		}
		if o4 := Owner(id, four); o4 != o3 {
			if o4 != "n4" {
				t.Fatalf("object %d moved from %s to %s when n4 joined", i, o3, o4)
			}
			movedOnJoin++
		}
	}
	for _, n := range three {
		if share := float64(count[n]) / objects; math.Abs(share-1.0/3) > 0.02 {
			t.Errorf("%s owns %.3f of the objects, want about 1/3", n, share)
		}
	}
	if movedOnLeave != 0 {
		t.Errorf("%d objects of staying nodes moved when n2 left", movedOnLeave)
	}
	if share := float64(movedOnJoin) / objects; math.Abs(share-0.25) > 0.02 {
		t.Errorf("n4 took %.3f of the objects, want about 1/4", share)
	}
	// Order of the view does not matter; an empty view has no owner.
	id := testID(1)
	if Owner(id, []string{"n3", "n1", "n2"}) != Owner(id, three) || Owner(id, nil) != "" {
		t.Fatal("owner depends on the order of the view")
	}
}
