#!/usr/bin/env bash
# The demo (README, `make demo`): runs offline on the embedded defaults, no API key.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 LITELLM_LOCAL_MODEL_COST_MAP=True
export AIAPP_HOME="${AIAPP_HOME:-$PWD/.aiapp}"

echo "== routes"
$BIN/aiapp models
echo
echo "== a question with context, answered offline by the local/extractive baseline"
$BIN/aiapp complete "$(cat <<'Q'
<context>
[1] corpora/ollama/faq.md
Ollama binds 127.0.0.1 port 11434 by default. Change the bind address with the OLLAMA_HOST environment variable. Set OLLAMA_HOST=0.0.0.0 to make the server listen on all interfaces.
[2] corpora/ollama/gpu.md
Ollama supports Nvidia GPUs with compute capability 5.0 and above.
</context>
How do I make the server listen on all interfaces?
Q
)"
echo
echo "== a question the context cannot answer"
$BIN/aiapp complete "<context>Ollama supports Nvidia GPUs with compute capability 5.0.</context> What is the capital of France?"
echo
echo "== index the demo corpus (corpora/ollama/): Qdrant Edge + MiniLM + BM25; a re-run embeds only changes"
$BIN/aiapp index ollama
echo
echo "== hybrid search (dense + BM25, fused by Qdrant)"
$BIN/aiapp search "how do I change the port the server listens on" --k 3
echo
echo "== the RAG app on the demo corpus (corpora/ollama/, indexed on first use), prompt support_answer@production"
ANSWER="$($BIN/aiapp ask "How do I make the server listen on all interfaces?" --json)"
echo "$ANSWER"
echo
echo "== another question, as text (answers cite their sources as [n])"
$BIN/aiapp ask "Which port does the Ollama server use by default?"
echo
echo "== that first answer's trace: app, retrieval and llm spans, with the prompt ref and hash"
$BIN/aiapp traces show "$(echo "$ANSWER" | $BIN/python -c 'import json, sys; print(json.load(sys.stdin)["trace_id"])')"
echo
echo "== recent traces ($AIAPP_HOME/traces.db)"
$BIN/aiapp traces -n 5
echo
echo "== evals: the demo suites (evals/*.yaml) against local/extractive, gated against evals/baselines/"
echo "   (judge metrics are unscored without a judge model: configure the judge route to score them)"
$BIN/aiapp eval --gate
