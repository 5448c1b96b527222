// What a gRPC status counts as for outlier detection: Envoy maps grpc-status
// to an HTTP code (Grpc::Utility::grpcToHttpStatus), so UNAVAILABLE in a 200
// response is a gateway error, as a 503 would be.
const GRPC_TO_HTTP: readonly number[] = [
  200, // OK
  499, // CANCELLED
  500, // UNKNOWN
  400, // INVALID_ARGUMENT
  504, // DEADLINE_EXCEEDED
  404, // NOT_FOUND
  409, // ALREADY_EXISTS
  403, // PERMISSION_DENIED
  429, // RESOURCE_EXHAUSTED
  400, // FAILED_PRECONDITION
  409, // ABORTED
  400, // OUT_OF_RANGE
  501, // UNIMPLEMENTED
  500, // INTERNAL
  503, // UNAVAILABLE
  500, // DATA_LOSS
  401, // UNAUTHENTICATED
];

/** The HTTP code a grpc-status value stands for; undefined when it is not one. */
export function grpcStatusToHttp(value: string | string[] | undefined): number | undefined {
  if (typeof value !== 'string' || !/^\d{1,2}$/.test(value)) return undefined;
  return GRPC_TO_HTTP[Number(value)] ?? 500;
}

export const isGrpc = (contentType: string | string[] | undefined): boolean => typeof contentType === 'string' && contentType.startsWith('application/grpc');
