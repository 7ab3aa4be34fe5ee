"""The long-tail science everything above uses, pure (numpy and the standard library only: no torch,
no Ray, no I/O): class profiles and the split's selection (profiles), head / medium / tail groups
(groups), and the metrics of docs/methods.md (metrics)."""
