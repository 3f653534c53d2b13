"""Initiate at 100 / 1,000 / 10,000 parts against a moto S3 server: server time and response
bytes, next to a plain `generate_presigned_url` loop for the same parts.

Run: `python -m bench.presign [--quick]`.
"""

from __future__ import annotations

import json

from bench.common import MIB, Row, median_time, moto_s3, run_alone

GOAL_SECONDS = 0.25


def run(quick: bool = False) -> list[Row]:
    from django.contrib.auth import get_user_model
    from django.test import Client

    from uploads.auth import refresh_token_for

    user, _ = get_user_model().objects.get_or_create(username="bench")
    token = str(refresh_token_for(user).access_token)
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    counts = [100, 1_000] if quick else [100, 1_000, 10_000]
    repeat = 1 if quick else 5
    rows: list[Row] = []
    with moto_s3() as (_endpoint, s3):
        upload = s3.create_multipart_upload(Bucket="bench", Key="baseline")
        for parts in counts:
            part_size = 5 * MIB
            body = json.dumps(
                {"file_name": "big.bin", "file_size": parts * part_size, "part_size": part_size}
            )
            sizes: list[int] = []

            def initiate(body: str = body, sizes: list[int] = sizes) -> None:
                response = client.post("/v1/files/uploads", body, content_type="application/json")
                assert response.status_code == 201, response.content
                sizes.append(len(response.content))

            def baseline(parts: int = parts) -> None:
                for number in range(1, parts + 1):
                    s3.generate_presigned_url(
                        "upload_part",
                        Params={
                            "Bucket": "bench",
                            "Key": "baseline",
                            "UploadId": upload["UploadId"],
                            "PartNumber": number,
                        },
                        ExpiresIn=3600,
                        HttpMethod="PUT",
                    )

            ours = median_time(initiate, repeat)
            # botocore's loop over 10,000 parts takes seconds a run: three runs tell enough.
            theirs = median_time(baseline, min(repeat, 3) if parts >= 10_000 else repeat)
            rows.append(
                Row(
                    measure=f"initiate {parts:,} parts (server; {sizes[-1] / 1e6:.2f} MB JSON)",
                    ours=ours,
                    baseline=theirs,
                    unit="s",
                    goal=f"≤ {GOAL_SECONDS} s" if parts == 10_000 else "",
                    passed=(ours <= GOAL_SECONDS) if parts == 10_000 else None,
                    note="baseline: generate_presigned_url loop alone",
                )
            )
    return rows


def main() -> None:
    run_alone("presign")


if __name__ == "__main__":
    main()
