package tidelog

// LiveFeeds is the number of C watchers not yet freed.
func LiveFeeds() int64 { return liveFeeds.Load() }
