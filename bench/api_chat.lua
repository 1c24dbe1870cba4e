-- POST /api/chat (Ollama native), one aggregated JSON answer.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"bench-model","messages":[{"role":"user","content":"hi"}],"stream":false}'
