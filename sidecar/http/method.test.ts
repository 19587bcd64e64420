import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { bodyOverrides, overrideBodyType, requestOverrides } from './method.ts';

describe('method overrides', () => {
  it('reads every override header, repeated and comma-listed, and _method in the query', () => {
    assert.deepEqual(
      requestOverrides(
        {
          'x-http-method-override': ['delete', ' PUT , patch'],
          'x-http-method': ['Delete'],
          'x-method-override': ['PURGE'],
        },
        '?a=1&%5Fmethod=delete&_METHOD=put+&_method=',
      ),
      ['DELETE', 'PUT', 'PATCH', 'DELETE', 'PURGE', 'DELETE', 'PUT'],
    );
    assert.deepEqual(requestOverrides({ 'x-other': ['DELETE'] }, '?method=DELETE'), []);
  });

  it('reads _method from form, JSON and multipart bodies', () => {
    assert.equal(overrideBodyType('application/x-www-form-urlencoded; charset=utf-8'), 'form');
    assert.equal(overrideBodyType('Multipart/Form-Data; boundary=x'), 'multipart');
    assert.equal(overrideBodyType('application/vnd.api+json'), 'json');
    assert.equal(overrideBodyType('text/plain'), undefined);
    assert.deepEqual(bodyOverrides('form', '', Buffer.from('a=1&_method=DELETE&%5fmethod=put')), [
      'DELETE',
      'PUT',
    ]);
    assert.deepEqual(bodyOverrides('json', '', Buffer.from('{"a":1,"_method":"delete"}')), ['DELETE']);
    assert.deepEqual(bodyOverrides('json', '', Buffer.from('[{"_method":"delete"}]')), []);
    assert.equal(bodyOverrides('json', '', Buffer.from('{"_method":')), undefined, 'malformed: unreadable');
    assert.equal(bodyOverrides('json', '', Buffer.from('{"_method":["DELETE"]}')), undefined);
    assert.equal(
      bodyOverrides('json', '', Buffer.from('{"_method":"DELETE","\\u005fmethod":"GET"}')),
      undefined,
      'a repeated key is read differently by different parsers',
    );
    const multipart = [
      '--b0',
      'Content-Disposition: form-data; name="file"; filename="a.txt"',
      '',
      'hello',
      '--b0',
      'content-disposition: form-data; name="_method"',
      '',
      'DELETE',
      '--b0--',
      '',
    ].join('\r\n');
    assert.deepEqual(
      bodyOverrides('multipart', 'multipart/form-data; boundary="b0"', Buffer.from(multipart)),
      ['DELETE'],
    );
    assert.equal(bodyOverrides('multipart', 'multipart/form-data', Buffer.from(multipart)), undefined);
  });
});
