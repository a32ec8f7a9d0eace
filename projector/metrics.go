package projector

// Backlog is how many records wait in the queue to be applied (metrics).
func (p *Projector) Backlog() int { return len(p.queue) }

// Sizes are the Badger snapshot's LSM and value log sizes in bytes, as
// Badger last measured them (it refreshes them every minute).
func (p *Projector) Sizes() (lsmBytes, vlogBytes int64) { return p.db.Size() }
