-- wrk script: POST a 1 KiB JSON body (the seed's fields plus padding).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"id":"1234","customername":"Contoso","pad":"' .. string.rep("x", 976) .. '"}'
