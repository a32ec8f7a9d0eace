import { DurableObject } from "strata";
export class Counter extends DurableObject {
  async increment(by: number = 1) {
    let v = ((await this.ctx.storage.get("value")) ?? 0) + by * 10;
    await this.ctx.storage.put("value", v);
    return v;
  }
}
