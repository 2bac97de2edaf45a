"""HTTP routes. Each handler takes its dependencies, calls one service function."""
