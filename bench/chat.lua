-- POST /v1/chat/completions, non-streamed.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"bench-model","messages":[{"role":"user","content":"hi"}]}'
