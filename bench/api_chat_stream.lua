-- POST /api/chat (Ollama native), streamed as NDJSON.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"bench-model","messages":[{"role":"user","content":"hi"}],"stream":true}'
