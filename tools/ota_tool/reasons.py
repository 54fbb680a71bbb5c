"""What to do about a device's refusal or failure: a hint per OTAError reason code (lib/ota), as
`ota-tool device update` prints it after the reason and the message."""

HINTS = {
    "network_settings": "give the board its Wi-Fi settings: ota-tool deploy --wifi SSID (the password from "
                        "--wifi-password-env VAR or a prompt); if your app joins the network itself (app.connect), "
                        "add --no-network-check",
    "no_source": "set the update server: ota-tool deploy --server https://HOST:8443/ (ota-tool serve prints it)",
    "no_keys": "give the board the release key: ota-tool deploy --keys release.pem.pub",
    "unknown_key": "the release is signed by a key the board does not trust: deploy its .pub with --keys, "
                   "or rotate keys with a signed key list (ota-tool keylist)",
    "bad_signature": "the manifest does not verify: release it again with the key the board trusts "
                     "(ota-tool verify MANIFEST --pubkey KEY.pub checks it on the host)",
    "threshold": "the release needs more signatures from keys the board trusts (ota-tool release --key A --key B)",
    "out_of_memory": "the board has too little free heap for the download next to TLS: load fewer modules "
                     "before updating, or (simulated board) start ota-tool sim-port with a larger --heap",
    "connect": "the board cannot reach the server: is ota-tool serve running, on an address the board can reach "
               "(--bind, --san), and is the URL in its settings right (ota-tool device config get source)?",
    "network": "the network failed during the update: check the server and the board's Wi-Fi, then try again",
    "timeout": "the server did not answer in time: check it is running and reachable, then try again",
    "stalled": "the download stopped making progress: check the network, then try again (it resumes)",
    "dns": "the board cannot resolve the server's name: use an address, or check the network's DNS",
    "tls": "the TLS connection failed: is the server speaking HTTPS on that port?",
    "tls_verify": "the board does not trust the server's certificate: deploy the server's CA "
                  "(ota-tool deploy --ca .ota-tls/ca.der), check the host name is in the certificate "
                  "(serve --san) and that the board's clock is set",
    "no_ca": "deploy the server's CA: ota-tool deploy --ca .ota-tls/ca.der",
    "bad_ca": "the CA file on the board is not a certificate: deploy it again with ota-tool deploy --ca",
    "not_found": "the server has no such file: check the source URL (ota-tool device config get source) "
                 "and that the release is published there",
    "http_404": "the server has no such file: check the source URL (ota-tool device config get source) "
                "and that the release is published there",
    "not_in_rollout": "the release is staged and this device is not in the stage yet: widen it "
                      "(ota-tool rollout MANIFEST --key KEY.pem --percent N; while no device has reported trying "
                      "it, add --min-reports 0)",
    "halted": "the release is halted: ota-tool rollout MANIFEST --key KEY.pem --resume",
    "known_bad": "this release failed on this board before: release a fixed version",
    "downgrade": "the release is older than what the board runs: release a higher version "
                 "(or allow_downgrade in its settings)",
    "replayed": "the server returned an older manifest of a version the board has seen: publish the newest one",
    "security_version": "the release's security_version is below the board's anti-rollback counter",
    "wrong_chip": "the image is for another chip: build it for this board's chip",
    "wrong_board": "the release names another board (ota-tool release --board)",
    "wrong_channel": "the manifest is for another channel than the board's (settings: channel)",
    "too_large": "the image does not fit the board's OTA slot: build a smaller firmware",
    "expired": "the manifest has expired: release it again",
    "requires_micropython": "the release needs another MicroPython version than the board runs",
    "requires_idf": "the release needs another ESP-IDF version than the board runs",
    "hash_mismatch": "the downloaded file does not match the signed hash: the server holds a damaged or "
                     "swapped artifact (ota-tool verify MANIFEST checks the folder)",
    "bad_config": "the board's settings are not valid: ota-tool device config get, then set or unset the key",
    "internal_error": "a bug in the library on the board: the board's log has the details (ota-tool device log)",
}


def hint(reason):
    if reason in HINTS:
        return HINTS[reason]
    if reason and reason.startswith("http_5"):
        return "the server answered with an error: look at its log, then try again"
    if reason and reason.startswith("http_"):
        return "the server refused the request: check the source URL and the server's log"
    return "the board's log says more: ota-tool device log"
