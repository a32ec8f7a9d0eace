// Cloudflare's WebSocket hibernation chat room, with only the import line
// changed: messages are kept in storage and broadcast to every socket.
import { DurableObject } from "strata";

export class ChatRoom extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    this.ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair("ping", "pong"));
  }

  async fetch(request) {
    const url = new URL(request.url);
    if (request.headers.get("Upgrade") !== "websocket") {
      const messages = (await this.ctx.storage.get("messages")) ?? [];
      return Response.json(messages);
    }
    const name = url.searchParams.get("name") ?? "anonymous";
    const webSocketPair = new WebSocketPair();
    const [client, server] = Object.values(webSocketPair);
    this.ctx.acceptWebSocket(server, [name]);
    server.serializeAttachment({ name, joined: Date.now() });
    server.send(JSON.stringify({ type: "welcome", name, history: (await this.ctx.storage.get("messages")) ?? [] }));
    return new Response(null, { status: 101, webSocket: client });
  }

  async webSocketMessage(ws, message) {
    const { name } = ws.deserializeAttachment();
    const messages = (await this.ctx.storage.get("messages")) ?? [];
    const entry = { from: name, text: String(message), at: Date.now() };
    messages.push(entry);
    await this.ctx.storage.put("messages", messages.slice(-100));
    for (const peer of this.ctx.getWebSockets()) {
      peer.send(JSON.stringify({ type: "message", ...entry }));
    }
  }

  async webSocketClose(ws, code, reason, wasClean) {
    ws.close(code, "Durable Object is closing WebSocket");
  }
}
