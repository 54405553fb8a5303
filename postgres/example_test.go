package postgres_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/arrhq/arr/operation"
	"github.com/arrhq/arr/postgres"
	"github.com/arrhq/arr/queue"
)

// A program records an order in its own table and submits the arr
// operation that fulfils it in the same transaction: both commit, or
// neither does. arr's workers, opened on the same URL (e.g. arr serve
// with store and queue postgres://…&schema=arr), run the operation once
// the transaction commits.
func ExampleStore_SubmitTx() {
	ctx := context.Background()
	db, err := postgres.Open(ctx, "postgres://app@127.0.0.1:5432/shop?sslmode=disable&schema=arr")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	store := db.Store()
	defer store.Close()

	orderID := "order-1042"
	id := uuid.Must(uuid.NewV7()).String()
	now := time.Now().UTC()
	op := &operation.Operation{
		ID: id, Route: "fulfil", Status: operation.Pending, CreatedAt: now, UpdatedAt: now,
		IdempotencyKey: orderID, // submitting the same order twice yields one operation
	}
	req := &operation.Request{Method: "POST", Path: "/v1/fulfil", Body: []byte(`{"order":"order-1042"}`)}

	var stored *operation.Operation
	var created bool
	// Any transaction on the same database will do; here, on arr's pool.
	err = pgx.BeginFunc(ctx, db.Pool(), func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO public.orders (id, customer, status) VALUES ($1, $2, 'placed')`, orderID, "ada"); err != nil {
			return err
		}
		// The message body names the route, as arr's api does.
		stored, created, err = store.SubmitTx(ctx, tx, op, req, queue.Message{ID: id, Body: []byte(op.Route)})
		return err
	})
	if err != nil {
		log.Fatal(err) // rolled back: neither the order nor the operation exists
	}
	fmt.Println("operation", stored.ID, "created:", created)
}
