# Calls every AWS KMS operation through boto3 against an endpoint and prints
# {"Operation": "ok" | "<error code>: <message>"} as JSON. botocore parses
# every response with the KMS service model, so a field of the wrong type
# (a timestamp that is not a number, a blob that is not base64) fails here.
# Usage: python3 boto3_every_operation.py ENDPOINT ACCESS_KEY_ID SECRET
import json
import sys

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

ep, akid, secret = sys.argv[1:4]
kms = boto3.client(
    "kms", endpoint_url=ep, region_name="us-east-1",
    aws_access_key_id=akid, aws_secret_access_key=secret,
    config=Config(retries={"max_attempts": 1, "mode": "standard"}),
)
me = boto3.client(
    "sts", endpoint_url=ep, region_name="us-east-1",
    aws_access_key_id=akid, aws_secret_access_key=secret,
).get_caller_identity()["Arn"]
results = {}


def run(op, f):
    try:
        out = f()
        results[op] = "ok"
        return out
    except ClientError as e:
        err = e.response["Error"]
        results[op] = "%s: %s" % (err.get("Code"), err.get("Message"))
    except Exception as e:  # a response botocore could not parse
        results[op] = "client failure: %r" % (e,)
    return None


sym = run("CreateKey", lambda: kms.create_key(Description="every op", Tags=[{"TagKey": "t", "TagValue": "v"}]))
k = sym["KeyMetadata"]["KeyId"] if sym else "missing"
run("DescribeKey", lambda: kms.describe_key(KeyId=k))
run("ListKeys", lambda: kms.list_keys(Limit=10))
run("UpdateKeyDescription", lambda: kms.update_key_description(KeyId=k, Description="renamed"))
run("CreateAlias", lambda: kms.create_alias(AliasName="alias/every", TargetKeyId=k))
k2 = kms.create_key()["KeyMetadata"]["KeyId"]
run("UpdateAlias", lambda: kms.update_alias(AliasName="alias/every", TargetKeyId=k2))
run("ListAliases", lambda: kms.list_aliases(KeyId=k2))
run("DeleteAlias", lambda: kms.delete_alias(AliasName="alias/every"))
run("TagResource", lambda: kms.tag_resource(KeyId=k, Tags=[{"TagKey": "a", "TagValue": "b"}]))
run("ListResourceTags", lambda: kms.list_resource_tags(KeyId=k))
run("UntagResource", lambda: kms.untag_resource(KeyId=k, TagKeys=["a"]))
enc = run("Encrypt", lambda: kms.encrypt(KeyId=k, Plaintext=b"x", EncryptionContext={"c": "1"}))
blob = enc["CiphertextBlob"] if enc else b"\0"
run("Decrypt", lambda: kms.decrypt(CiphertextBlob=blob, EncryptionContext={"c": "1"}))
run("ReEncrypt", lambda: kms.re_encrypt(CiphertextBlob=blob, SourceEncryptionContext={"c": "1"}, DestinationKeyId=k2))
run("GenerateDataKey", lambda: kms.generate_data_key(KeyId=k, KeySpec="AES_128"))
run("GenerateDataKeyWithoutPlaintext", lambda: kms.generate_data_key_without_plaintext(KeyId=k, NumberOfBytes=16))
run("GenerateRandom", lambda: kms.generate_random(NumberOfBytes=32))
run("EnableKeyRotation", lambda: kms.enable_key_rotation(KeyId=k))
run("GetKeyRotationStatus", lambda: kms.get_key_rotation_status(KeyId=k))
run("RotateKeyOnDemand", lambda: kms.rotate_key_on_demand(KeyId=k))
run("ListKeyRotations", lambda: kms.list_key_rotations(KeyId=k))
run("DisableKeyRotation", lambda: kms.disable_key_rotation(KeyId=k))
run("GetKeyPolicy", lambda: kms.get_key_policy(KeyId=k, PolicyName="default"))
run("ListKeyPolicies", lambda: kms.list_key_policies(KeyId=k))
policy = kms.get_key_policy(KeyId=k, PolicyName="default")["Policy"]
run("PutKeyPolicy", lambda: kms.put_key_policy(KeyId=k, PolicyName="default", Policy=policy))
g = run("CreateGrant", lambda: kms.create_grant(KeyId=k, GranteePrincipal=me, RetiringPrincipal=me, Operations=["Decrypt"], Name="g1"))
run("ListGrants", lambda: kms.list_grants(KeyId=k))
run("ListRetirableGrants", lambda: kms.list_retirable_grants(RetiringPrincipal=me))
if g:
    run("RetireGrant", lambda: kms.retire_grant(GrantToken=g["GrantToken"]))
g2 = kms.create_grant(KeyId=k, GranteePrincipal=me, Operations=["Encrypt"])
run("RevokeGrant", lambda: kms.revoke_grant(KeyId=k, GrantId=g2["GrantId"]))
run("DisableKey", lambda: kms.disable_key(KeyId=k2))
run("EnableKey", lambda: kms.enable_key(KeyId=k2))
run("ScheduleKeyDeletion", lambda: kms.schedule_key_deletion(KeyId=k2, PendingWindowInDays=7))
run("CancelKeyDeletion", lambda: kms.cancel_key_deletion(KeyId=k2))

rsa = kms.create_key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
sig = run("Sign", lambda: kms.sign(KeyId=rsa, Message=b"m", SigningAlgorithm="RSASSA_PSS_SHA_256"))
if sig:
    run("Verify", lambda: kms.verify(KeyId=rsa, Message=b"m", Signature=sig["Signature"], SigningAlgorithm="RSASSA_PSS_SHA_256"))
run("GetPublicKey", lambda: kms.get_public_key(KeyId=rsa))
pair_key = kms.create_key()["KeyMetadata"]["KeyId"]
run("GenerateDataKeyPair", lambda: kms.generate_data_key_pair(KeyId=pair_key, KeyPairSpec="ECC_NIST_P256"))
run("GenerateDataKeyPairWithoutPlaintext", lambda: kms.generate_data_key_pair_without_plaintext(KeyId=pair_key, KeyPairSpec="RSA_2048"))
hmac = kms.create_key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]["KeyId"]
mac = run("GenerateMac", lambda: kms.generate_mac(KeyId=hmac, Message=b"m", MacAlgorithm="HMAC_SHA_256"))
if mac:
    run("VerifyMac", lambda: kms.verify_mac(KeyId=hmac, Message=b"m", Mac=mac["Mac"], MacAlgorithm="HMAC_SHA_256"))

mrk = kms.create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
run("ReplicateKey", lambda: kms.replicate_key(KeyId=mrk, ReplicaRegion="us-west-2"))

ext = kms.create_key(Origin="EXTERNAL")["KeyMetadata"]["KeyId"]
params = run("GetParametersForImport", lambda: kms.get_parameters_for_import(
    KeyId=ext, WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec="RSA_2048"))
try:
    import os
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding
    have_crypto = True
except ImportError:
    have_crypto = False
if params and have_crypto:
    pub = serialization.load_der_public_key(params["PublicKey"])
    wrapped = pub.encrypt(os.urandom(32), padding.OAEP(
        mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None))
    run("ImportKeyMaterial", lambda: kms.import_key_material(
        KeyId=ext, ImportToken=params["ImportToken"], EncryptedKeyMaterial=wrapped,
        ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE"))
    run("DeleteImportedKeyMaterial", lambda: kms.delete_imported_key_material(KeyId=ext))
else:
    results["ImportKeyMaterial"] = "skipped: python cryptography missing"
    results["DeleteImportedKeyMaterial"] = "skipped: python cryptography missing"
print(json.dumps(results))
