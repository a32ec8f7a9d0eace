package classes

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/strata-objects/strata/objects"
)

// account is a bank account: a balance in whole cents under "balance". A
// transfer debits this account and credits another through a synchronous
// call (objects.Stub): the debit is durable before the credit's call
// leaves (the call is a commit point), and a credit that fails is undone
// by a refund in the same turn.
type account struct{}

// Account is the "account" class: deposit, withdraw, balance, transfer.
func Account() *objects.Class {
	return objects.Define("account", func() *account { return &account{} })
}

// AmountInput is an amount in cents, positive.
type AmountInput struct {
	Amount int64 `json:"amount"`
}

// TransferInput moves Amount cents to the account named To.
type TransferInput struct {
	To     string `json:"to"`
	Amount int64  `json:"amount"`
}

// Balance is what every account method answers.
type Balance struct {
	Balance int64 `json:"balance"`
}

// accountAmountMax bounds one amount and a balance, so nothing overflows.
const accountAmountMax = 1 << 50

func checkAmount(n int64) error {
	if n <= 0 || n > accountAmountMax {
		return objects.Errorf(http.StatusBadRequest, "bad_amount", "amount %d: want 1 to %d cents", n, int64(accountAmountMax))
	}
	return nil
}

func balanceOf(ctx *objects.Ctx) (int64, error) {
	b, _, err := objects.GetJSON[int64](ctx.Storage(), "balance")
	return b, err
}

func add(ctx *objects.Ctx, by int64) (Balance, error) {
	b, err := balanceOf(ctx)
	if err != nil {
		return Balance{}, err
	}
	if b+by < 0 {
		return Balance{}, objects.Errorf(http.StatusConflict, "insufficient_funds", "balance %d, cannot take %d", b, -by)
	}
	if b+by > accountAmountMax {
		return Balance{}, objects.Errorf(http.StatusConflict, "balance_limit", "balance %d cannot take %d more", b, by)
	}
	return Balance{Balance: b + by}, objects.PutJSON(ctx.Storage(), "balance", b+by)
}

// Deposit adds amount cents.
func (*account) Deposit(ctx *objects.Ctx, in AmountInput) (Balance, error) {
	if err := checkAmount(in.Amount); err != nil {
		return Balance{}, err
	}
	return add(ctx, in.Amount)
}

// Withdraw takes amount cents, if the balance has them.
func (*account) Withdraw(ctx *objects.Ctx, in AmountInput) (Balance, error) {
	if err := checkAmount(in.Amount); err != nil {
		return Balance{}, err
	}
	return add(ctx, -in.Amount)
}

// Balance returns the balance.
func (*account) Balance(ctx *objects.Ctx) (Balance, error) {
	b, err := balanceOf(ctx)
	return Balance{Balance: b}, err
}

// Transfer debits amount cents here and deposits them in account To. The
// debit is durable before the deposit's call leaves (the call is a commit
// point). If the other account refuses the deposit (a client error: it ran
// and wrote nothing), the debit is refunded, durably, and the refusal
// returned. Any other failure leaves the outcome unknown (a timeout, a
// node lost mid-call: the deposit may have run), so the debit stays and
// the error says so; durable messages (issue 16) are the exactly-once way.
func (*account) Transfer(ctx *objects.Ctx, in TransferInput) (Balance, error) {
	if err := checkAmount(in.Amount); err != nil {
		return Balance{}, err
	}
	if err := objects.ValidateName(in.To); err != nil {
		return Balance{}, err // before the debit: the turn keeps nothing
	}
	if in.To == ctx.Name() {
		return Balance{}, objects.Errorf(http.StatusBadRequest, "same_account", "a transfer to itself")
	}
	if _, err := add(ctx, -in.Amount); err != nil {
		return Balance{}, err
	}
	err := ctx.Object("account", in.To).Call(ctx, "deposit", AmountInput{Amount: in.Amount}, nil)
	var refused *objects.ClientError
	switch {
	case errors.As(err, &refused):
		if _, rerr := add(ctx, in.Amount); rerr != nil {
			return Balance{}, rerr
		}
		if serr := ctx.Storage().Sync(); serr != nil {
			return Balance{}, serr
		}
		return Balance{}, err
	case err != nil:
		return Balance{}, fmt.Errorf("transfer of %d to %s: debited, deposit outcome unknown: %w", in.Amount, in.To, err)
	}
	b, err := balanceOf(ctx)
	return Balance{Balance: b}, err
}

// SendTransfer debits amount cents here and sends the deposit to account
// To as a durable message (objects.Stub.SendWithReply): the debit and the
// message are one event, so either both happen or neither; the deposit is
// then applied exactly once, however often it is delivered, and its
// answer comes back as a turn of Credited. Unlike Transfer, nothing is
// ever "outcome unknown": at the end every debit has its deposit.
func (*account) SendTransfer(ctx *objects.Ctx, in TransferInput) (Balance, error) {
	if err := checkAmount(in.Amount); err != nil {
		return Balance{}, err
	}
	if err := objects.ValidateName(in.To); err != nil {
		return Balance{}, err
	}
	if in.To == ctx.Name() {
		return Balance{}, objects.Errorf(http.StatusBadRequest, "same_account", "a transfer to itself")
	}
	b, err := add(ctx, -in.Amount)
	if err != nil {
		return Balance{}, err
	}
	if err := ctx.Object("account", in.To).SendWithReply("credit", AmountInput{Amount: in.Amount}, "credited"); err != nil {
		return Balance{}, err // the turn fails: no debit, no message
	}
	return b, nil
}

// Credit is a durable transfer's deposit (SendTransfer): it adds amount
// cents and counts the credits under "credits".
func (*account) Credit(ctx *objects.Ctx, in AmountInput) (Balance, error) {
	if err := checkAmount(in.Amount); err != nil {
		return Balance{}, err
	}
	n, _, err := objects.GetJSON[int64](ctx.Storage(), "credits")
	if err != nil {
		return Balance{}, err
	}
	if err := objects.PutJSON(ctx.Storage(), "credits", n+1); err != nil {
		return Balance{}, err
	}
	return add(ctx, in.Amount)
}

// Credited is the answer to a durable transfer: counted under "credited",
// or under "refused" if the deposit was refused (only past the balance
// limit; it wrote nothing): the answer does not carry the amount, so an
// operator settles a refusal.
func (*account) Credited(ctx *objects.Ctx, r objects.Reply) error {
	key := "credited"
	if r.Error != nil {
		key = "refused"
	}
	n, _, err := objects.GetJSON[int64](ctx.Storage(), key)
	if err != nil {
		return err
	}
	return objects.PutJSON(ctx.Storage(), key, n+1)
}

// Counts are an account's durable-transfer counters.
type Counts struct {
	Balance  int64 `json:"balance"`
	Credits  int64 `json:"credits"`  // deposits applied here
	Credited int64 `json:"credited"` // answers to this account's transfers
	Refused  int64 `json:"refused"`
}

// Counts returns the balance and the durable-transfer counters.
func (*account) Counts(ctx *objects.Ctx) (Counts, error) {
	var c Counts
	for key, p := range map[string]*int64{"balance": &c.Balance, "credits": &c.Credits, "credited": &c.Credited, "refused": &c.Refused} {
		v, _, err := objects.GetJSON[int64](ctx.Storage(), key)
		if err != nil {
			return Counts{}, err
		}
		*p = v
	}
	return c, nil
}
