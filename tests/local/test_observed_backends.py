"""moto's S3 and SNS backends, subclassed to report writes and publications (local.observed_backends)."""


def test_every_object_created_is_reported_once_with_its_version(moto):
    s3 = moto.client("s3")
    s3.create_bucket(Bucket="obs")
    s3.put_bucket_versioning(Bucket="obs", VersioningConfiguration={"Status": "Enabled"})
    moto.objects.clear()
    s3.put_object(Bucket="obs", Key="incoming/a b+c.csv", Body=b"x,y\n1,2\n")
    s3.copy_object(Bucket="obs", Key="quarantine/a.csv", CopySource={"Bucket": "obs", "Key": "incoming/a b+c.csv"})
    upload = s3.create_multipart_upload(Bucket="obs", Key="big.csv")["UploadId"]
    part = s3.upload_part(Bucket="obs", Key="big.csv", UploadId=upload, PartNumber=1, Body=b"x" * 10)
    s3.complete_multipart_upload(Bucket="obs", Key="big.csv", UploadId=upload,
                                 MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]})
    kinds = [(event, key) for event, _, key, _ in moto.objects]
    assert kinds == [("s3:ObjectCreated:Put", "incoming/a b+c.csv"), ("s3:ObjectCreated:Copy", "quarantine/a.csv"),
                     ("s3:ObjectCreated:CompleteMultipartUpload", "big.csv")]  # moto alone: a Put, then the Complete
    version = s3.head_object(Bucket="obs", Key="incoming/a b+c.csv")["VersionId"]
    assert moto.objects[0][3] == version


def test_messages_published_to_a_topic_are_reported(moto):
    sns = moto.client("sns")
    arn = sns.create_topic(Name="obs-topic")["TopicArn"]
    moto.messages.clear()
    sns.publish(TopicArn=arn, Message="hello", Subject="greeting")
    assert moto.messages == [(arn, "hello", "greeting")]
