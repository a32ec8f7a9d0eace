package gateway

import (
	"net/http"

	"github.com/strata-objects/strata/cluster"
	"github.com/strata-objects/strata/objects"
)

// JSONCodec is the codec RPC bodies are in at the gateway. A cluster
// router decodes forwarded calls with it on the owner.
var JSONCodec objects.Codec = jsonCodec{}

// ClusterStatuser is a backend that is one node of a cluster.
type ClusterStatuser interface {
	Status() cluster.Status
}

// cluster serves GET /v1/cluster: the nodes this node sees live, their
// state and how many objects each holds. A node alone answers with itself.
func (g *Gateway) cluster(w http.ResponseWriter, r *http.Request) {
	cs, ok := g.cfg.Backend.(ClusterStatuser)
	if !ok {
		writeJSON(w, http.StatusOK, map[string]any{"mode": "single", "nodes": []any{}})
		return
	}
	st := cs.Status()
	writeJSON(w, http.StatusOK, struct {
		Mode string `json:"mode"`
		cluster.Status
	}{"cluster", st})
}
