package cli

import (
	"context"
	"fmt"

	"github.com/strata-objects/strata/jsclass"
)

// jsBenchClass is the class name of the JavaScript counter the JW
// workloads call (Cloudflare's counter example).
const jsBenchClass = "js-counter"

// jsBenchCounter is the JavaScript counter of the JW workloads.
const jsBenchCounter = `import { DurableObject } from "strata";
export class Counter extends DurableObject {
  async increment(by = 1) {
    let v = ((await this.ctx.storage.get("value")) ?? 0) + by;
    await this.ctx.storage.put("value", v);
    return v;
  }
  async get() { return (await this.ctx.storage.get("value")) ?? 0; }
}
`

// deployBenchJS deploys the JavaScript counter on a temporary bench server.
func deployBenchJS(ctx context.Context, n *node) error {
	if n == nil || n.js == nil {
		return fmt.Errorf("bench: JW workloads against --url: deploy the class %q yourself (strata deploy --class %s)", jsBenchClass, jsBenchClass)
	}
	_, err := n.js.Deploy(ctx, jsclass.DeployRequest{Class: jsBenchClass, Filename: "counter.js", Source: []byte(jsBenchCounter), By: "strata bench"})
	return err
}
