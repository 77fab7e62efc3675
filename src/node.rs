//! The composition root: start, run, drain and stop a node.
