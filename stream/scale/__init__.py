"""Scale-out (issue #13): one trainer, many scorer replicas, model snapshots on a compacted topic."""
