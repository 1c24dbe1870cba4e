-- POST /v1/chat/completions, streamed (SSE).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"bench-model","messages":[{"role":"user","content":"hi"}],"stream":true}'
