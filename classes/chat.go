package classes

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/strata-objects/strata/objects"
)

// chat is a chat room: one object per room name. Clients join over a
// WebSocket (/v1/objects/chat/{room}/ws?name=alice); every message is an
// event in the room's log and is broadcast to everyone in the room once it
// is durable. A newcomer gets the last 100 messages and the member list.
//
// The room keeps nothing in memory that it cannot rebuild: members are the
// tags of its sockets, which outlive the activation, so the room hibernates
// while its members sit idle and wakes on the next message.
type chat struct {
	seq    int64 // the newest message's number; 0 until loaded
	loaded bool
}

// Chat bounds.
const (
	chatHistoryMax   = 100  // messages storage keeps and a newcomer gets; the log keeps all
	chatTextBytesMax = 4096 // one message
	chatNameRunesMax = 32
	chatMemberTag    = "member"
	chatNameTagPfx   = "name:"
)

// ChatMessage is one message of a room.
type ChatMessage struct {
	Seq  int64     `json:"seq"`
	Name string    `json:"name"`
	Text string    `json:"text"`
	At   time.Time `json:"at"`
}

// chatFrame is what the room sends to its sockets.
type chatFrame struct {
	Type    string        `json:"type"` // welcome, message, join, leave, error
	You     string        `json:"you,omitempty"`
	Name    string        `json:"name,omitempty"`
	Members []string      `json:"members,omitempty"` // welcome only: the full list
	Count   int           `json:"count,omitempty"`   // join and leave: members now
	History []ChatMessage `json:"history,omitempty"`
	Error   string        `json:"error,omitempty"`
	Message *ChatMessage  `json:"message,omitempty"`
}

// PostInput is a message posted over RPC (a bot, a script).
type PostInput struct {
	Name string `json:"name"`
	Text string `json:"text"`
}

// Chat is the "chat" class: WebSocket rooms, plus post, messages and
// members over RPC.
func Chat() *objects.Class {
	return objects.Define("chat", func() *chat { return &chat{} })
}

// chatMember is a socket's attachment: who it is, kept across hibernation.
type chatMember struct {
	Name   string    `json:"name"`
	Joined time.Time `json:"joined"`
}

// WebSocketConnect admits a member named by ?name= and greets them with the
// room's recent messages. The ping/pong pair is answered by the gateway,
// so clients can keep their connection alive without waking the room.
func (c *chat) WebSocketConnect(ctx *objects.Ctx, ws *objects.WebSocket, r *http.Request) error {
	name := r.URL.Query().Get("name")
	if err := validChatName(name); err != nil {
		return err
	}
	if err := ws.SetTags(chatMemberTag, chatNameTagPfx+name); err != nil {
		return err
	}
	att, _ := json.Marshal(chatMember{Name: name, Joined: time.Now().UTC()})
	if err := ws.SetAttachment(att); err != nil {
		return err
	}
	if err := ctx.SetAutoResponse("ping", "pong"); err != nil {
		return err
	}
	history, err := c.recent(ctx)
	if err != nil {
		return err
	}
	members := chatMembers(ctx)
	if err := sendJSON(ws, chatFrame{Type: "welcome", You: name, Members: members, History: history}); err != nil {
		return err
	}
	// Join and leave carry the count, not the list: a list in every one
	// would make filling a room of n members cost n² names.
	return broadcast(ctx, ws, chatFrame{Type: "join", Name: name, Count: len(members)})
}

// WebSocketMessage posts a text message to the room.
func (c *chat) WebSocketMessage(ctx *objects.Ctx, ws *objects.WebSocket, m objects.Message) error {
	var who chatMember
	if err := json.Unmarshal(ws.Attachment(), &who); err != nil {
		return fmt.Errorf("socket %d attachment: %w", ws.ID(), err)
	}
	if m.Binary {
		return sendJSON(ws, chatFrame{Type: "error", Error: "send text frames"})
	}
	if _, err := c.post(ctx, who.Name, string(m.Data)); err != nil {
		if ce, ok := err.(*objects.ClientError); ok {
			return sendJSON(ws, chatFrame{Type: "error", Error: ce.Message})
		}
		return err
	}
	return nil
}

// WebSocketClose and WebSocketError tell the room a member left.
func (c *chat) WebSocketClose(ctx *objects.Ctx, ws *objects.WebSocket, code int, reason string) error {
	return c.left(ctx, ws)
}

func (c *chat) WebSocketError(ctx *objects.Ctx, ws *objects.WebSocket, err error) error {
	return c.left(ctx, ws)
}

func (c *chat) left(ctx *objects.Ctx, ws *objects.WebSocket) error {
	var who chatMember
	json.Unmarshal(ws.Attachment(), &who)
	return broadcast(ctx, nil, chatFrame{Type: "leave", Name: who.Name, Count: len(ctx.Sockets(chatMemberTag))})
}

// Post posts a message over RPC; it is broadcast like any other.
func (c *chat) Post(ctx *objects.Ctx, in PostInput) (ChatMessage, error) {
	if err := validChatName(in.Name); err != nil {
		return ChatMessage{}, err
	}
	return c.post(ctx, in.Name, in.Text)
}

// Messages returns the last 100 messages, oldest first.
func (c *chat) Messages(ctx *objects.Ctx) ([]ChatMessage, error) { return c.recent(ctx) }

// Members returns the names of the members connected now.
func (c *chat) Members(ctx *objects.Ctx) ([]string, error) { return chatMembers(ctx), nil }

// post stores message seq+1 (dropping the one that falls out of the last
// 100: the log keeps it) and broadcasts it. The broadcast leaves after the
// event holding the message is durable, so no client ever sees a message a
// crash could take back.
func (c *chat) post(ctx *objects.Ctx, name, text string) (ChatMessage, error) {
	if text == "" || len(text) > chatTextBytesMax || !utf8.ValidString(text) {
		return ChatMessage{}, objects.Errorf(400, "bad_text", "a message is 1 to %d bytes of UTF-8", chatTextBytesMax)
	}
	if err := c.load(ctx); err != nil {
		return ChatMessage{}, err
	}
	msg := ChatMessage{Seq: c.seq + 1, Name: name, Text: text, At: time.Now().UTC()}
	st := ctx.Storage()
	if err := objects.PutJSON(st, chatKey(msg.Seq), msg); err != nil {
		return ChatMessage{}, err
	}
	if err := objects.PutJSON(st, "seq", msg.Seq); err != nil {
		return ChatMessage{}, err
	}
	if old := msg.Seq - chatHistoryMax; old > 0 {
		if _, err := st.Delete(chatKey(old)); err != nil {
			return ChatMessage{}, err
		}
	}
	if err := broadcast(ctx, nil, chatFrame{Type: "message", Message: &msg}); err != nil {
		return ChatMessage{}, err
	}
	c.seq = msg.Seq // only once the turn's writes are staged
	return msg, nil
}

func (c *chat) load(ctx *objects.Ctx) error {
	if c.loaded {
		return nil
	}
	seq, _, err := objects.GetJSON[int64](ctx.Storage(), "seq")
	if err != nil {
		return err
	}
	c.seq, c.loaded = seq, true
	return nil
}

func (c *chat) recent(ctx *objects.Ctx) ([]ChatMessage, error) {
	kvs, err := ctx.Storage().List(objects.ListOptions{Prefix: "msg:"})
	if err != nil {
		return nil, err
	}
	out := make([]ChatMessage, 0, len(kvs))
	for _, kv := range kvs {
		var m ChatMessage
		if err := json.Unmarshal(kv.Value, &m); err != nil {
			return nil, fmt.Errorf("message %s: %w", kv.Key, err)
		}
		out = append(out, m)
	}
	return out, nil
}

func chatKey(seq int64) string { return fmt.Sprintf("msg:%020d", seq) }

// chatMembers lists the members by their name tags, in joining order.
func chatMembers(ctx *objects.Ctx) []string {
	names := []string{}
	for _, ws := range ctx.Sockets(chatMemberTag) {
		for _, tag := range ws.Tags() {
			if name, ok := strings.CutPrefix(tag, chatNameTagPfx); ok {
				names = append(names, name)
			}
		}
	}
	return names
}

// broadcast sends f to every member but skip; one encoding serves them all.
func broadcast(ctx *objects.Ctx, skip *objects.WebSocket, f chatFrame) error {
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	m := objects.Message{Data: b}
	for _, ws := range ctx.Sockets(chatMemberTag) {
		if skip != nil && ws.ID() == skip.ID() {
			continue
		}
		ws.SendMessage(m) // a socket that went away meanwhile is skipped
	}
	return nil
}

func sendJSON(ws *objects.WebSocket, f chatFrame) error {
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	return ws.SendMessage(objects.Message{Data: b})
}

func validChatName(name string) error {
	n := utf8.RuneCountInString(name)
	ok := n >= 1 && n <= chatNameRunesMax && utf8.ValidString(name)
	for _, r := range name {
		ok = ok && (unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_' || r == '.')
	}
	if !ok {
		return objects.Errorf(400, "bad_name", "name %q: want 1 to %d letters, digits, '-', '_' or '.'", name, chatNameRunesMax)
	}
	return nil
}
