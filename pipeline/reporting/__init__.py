"""The head / medium / tail report: gather evaluated runs, tabulate, plot, render Markdown and HTML."""
