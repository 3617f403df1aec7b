# SPDX-License-Identifier: Apache-2.0
"""STAND-IN for AWS STS (AssumeRoleWithWebIdentity) and the EC2 instance
metadata service (IMDSv2), on loopback: the one thing here that is not
the real service. It hands out the RADOS Gateway user's keys as the
"temporary" credentials, so a mount through them works end to end, and
records what it was asked.
"""

import datetime
import http.server
import json
import threading
import urllib.parse


class AwsStandIn:
    def __init__(self, access_key, secret_key, expected_token="web-id-token",
                 role="arn:aws:iam::123456789012:role/dagfs"):
        self.access_key, self.secret_key = access_key, secret_key
        self.expected_token, self.role = expected_token, role
        self.calls = []
        self.imds_token = "imds-session-token-1"
        self.expires = (datetime.datetime.utcnow() +
                        datetime.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")

    def start(self):
        standin = self

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def reply(self, code, body, ctype="text/plain"):
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                n = int(self.headers.get("Content-Length", 0))
                form = urllib.parse.parse_qs(self.rfile.read(n).decode())
                standin.calls.append(("sts", form))
                if (form.get("Action") != ["AssumeRoleWithWebIdentity"] or
                        form.get("WebIdentityToken") != [standin.expected_token] or
                        form.get("RoleArn") != [standin.role]):
                    return self.reply(403, "<ErrorResponse><Error><Code>"
                                      "AccessDenied</Code></Error></ErrorResponse>")
                self.reply(200, f"""<AssumeRoleWithWebIdentityResponse>
<AssumeRoleWithWebIdentityResult><Credentials>
<AccessKeyId>{standin.access_key}</AccessKeyId>
<SecretAccessKey>{standin.secret_key}</SecretAccessKey>
<SessionToken></SessionToken>
<Expiration>{standin.expires}</Expiration>
</Credentials></AssumeRoleWithWebIdentityResult>
</AssumeRoleWithWebIdentityResponse>""", "text/xml")

            def do_PUT(self):
                standin.calls.append(("imds-token", self.path))
                if (self.path == "/latest/api/token" and
                        self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")):
                    return self.reply(200, standin.imds_token)
                self.reply(400, "bad")

            def do_GET(self):
                standin.calls.append(("imds", self.path))
                if self.headers.get("X-aws-ec2-metadata-token") != standin.imds_token:
                    return self.reply(401, "token required")
                base = "/latest/meta-data/iam/security-credentials/"
                if self.path == base:
                    return self.reply(200, "dagfs-node-role")
                if self.path == base + "dagfs-node-role":
                    return self.reply(200, json.dumps({
                        "Code": "Success", "AccessKeyId": standin.access_key,
                        "SecretAccessKey": standin.secret_key, "Token": "",
                        "Expiration": standin.expires}))
                self.reply(404, "not found")

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        self.server.shutdown()
