"""Grammar tuning for ops: check flow and grammar files with every problem at its line
(`check`), see what an utterance means at a node (`probe`), and measure a grammar on a labelled
set of recordings and texts (`evaluate`). The command line is `ivr grammar` (`commands`), the
web console's API `ivr.api.grammar`."""
